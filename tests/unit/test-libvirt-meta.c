/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* memcoord's settings in a domain XML (daemon/hypervisor-libvirt.c): the <metadata> element
 * both ways and <memtune><min_guarantee>. */

#include <glib.h>

#include "hypervisor-libvirt.h"

#define MIB(x) ((uint64_t) (x) *UINT64_C(1024))
#define NS "xmlns:memcoord=\"" MC_LIBVIRT_META_NS "\""

static void test_parse(void)
{
        static const struct {
                const char *xml;
                uint64_t min, max;
                unsigned weight;
                int excluded;
        } table[] = {
                /* As virDomainGetMetadata() returns it, prefixed or not. */
                { "<memcoord:limits " NS " min=\"512M\" max=\"2G\" weight=\"200\" exclude=\"no\"/>",
                  MIB(512), MIB(2048), 200, 0 },
                { "<limits xmlns=\"" MC_LIBVIRT_META_NS "\" exclude=\"yes\"/>", 0, 0, 0, 1 },
                { "<limits min='1.5G'/>", MIB(1536), 0, 0, -1 },
                { "<limits max=\"1073741824\" weight=\"1\"/>", 0, MIB(1024), 1, -1 },
                /* Bytes that are not whole KiB round up: a floor is never lowered. */
                { "<limits min=\"1025\"/>", 2, 0, 0, -1 },
                { "<limits/>", 0, 0, 0, -1 },
                /* Attributes of later versions are left alone. */
                { "<limits min=\"1G\" future=\"x\"><child/></limits>", MIB(1024), 0, 0, -1 },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                McGuestMeta meta = MC_GUEST_META_NONE;
                g_autofree char *why = NULL;

                meta.min_guarantee_kib = 7;
                g_assert_cmpint(mc_libvirt_parse_meta(table[i].xml, &meta, &why), ==, 0);
                g_assert_null(why);
                g_assert_cmpuint(meta.min_kib, ==, table[i].min);
                g_assert_cmpuint(meta.max_kib, ==, table[i].max);
                g_assert_cmpuint(meta.weight, ==, table[i].weight);
                g_assert_cmpint(meta.excluded, ==, table[i].excluded);
                g_assert_cmpuint(meta.min_guarantee_kib, ==, 7);
        }
}

static void test_parse_invalid(void)
{
        static const char *const bad[] = {
                "<limits min=\"lots\"/>",
                "<limits max=\"-1G\"/>",
                "<limits weight=\"0\"/>",
                "<limits weight=\"10001\"/>",
                "<limits weight=\"2x\"/>",
                "<limits exclude=\"maybe\"/>",
                "<limits min=\"2G\" max=\"1G\"/>",
                "<other/>",
                "<limits min=\"1G\"",
                "",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                McGuestMeta meta = { .min_kib = 1, .max_kib = 2, .weight = 3, .excluded = 1 };
                g_autofree char *why = NULL;

                g_assert_cmpint(mc_libvirt_parse_meta(bad[i], &meta, &why), ==, -EINVAL);
                g_assert_nonnull(why);
                /* Unchanged on failure. */
                g_assert_cmpuint(meta.min_kib, ==, 1);
                g_assert_cmpuint(meta.weight, ==, 3);
        }
}

static void test_format_round_trip(void)
{
        static const struct {
                McGuestMeta meta;
                const char *xml;
        } table[] = {
                { { .min_kib = MIB(512), .max_kib = MIB(2048), .weight = 200, .excluded = 0 },
                  "<limits min=\"512M\" max=\"2G\" weight=\"200\" exclude=\"no\"/>" },
                { { .excluded = 1 }, "<limits exclude=\"yes\"/>" },
                { { .min_kib = 1000, .excluded = -1 }, "<limits min=\"1000K\"/>" },
                { { .max_kib = MIB(1536), .excluded = -1 }, "<limits max=\"1536M\"/>" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                g_autofree char *xml = mc_libvirt_format_meta(&table[i].meta);
                g_autofree char *why = NULL;
                McGuestMeta back = MC_GUEST_META_NONE;

                g_assert_cmpstr(xml, ==, table[i].xml);
                g_assert_cmpint(mc_libvirt_parse_meta(xml, &back, &why), ==, 0);
                g_assert_cmpuint(back.min_kib, ==, table[i].meta.min_kib);
                g_assert_cmpuint(back.max_kib, ==, table[i].meta.max_kib);
                g_assert_cmpuint(back.weight, ==, table[i].meta.weight);
                g_assert_cmpint(back.excluded, ==, table[i].meta.excluded);
        }
        /* Nothing set: no element (virDomainSetMetadata removes it). */
        McGuestMeta none = MC_GUEST_META_NONE;
        g_assert_null(mc_libvirt_format_meta(&none));
}

static void test_min_guarantee(void)
{
        static const struct {
                const char *xml;
                uint64_t kib;
        } table[] = {
                { "<domain><memtune><min_guarantee unit='MiB'>800</min_guarantee></memtune></domain>",
                  MIB(800) },
                { "<domain><memtune><min_guarantee>524288</min_guarantee></memtune></domain>", MIB(512) },
                { "<domain><memtune><min_guarantee unit='G'>1</min_guarantee></memtune></domain>",
                  MIB(1024) },
                { "<domain><memtune><min_guarantee unit='bytes'>1025</min_guarantee></memtune></domain>",
                  2 },
                { "<domain><memtune><hard_limit>1</hard_limit></memtune></domain>", 0 },
                /* Only domain > memtune > min_guarantee counts. */
                { "<domain><metadata><memtune><min_guarantee>5</min_guarantee></memtune></metadata></"
                  "domain>",
                  0 },
                { "<domain><memtune><min_guarantee unit='parsec'>5</min_guarantee></memtune></domain>", 0 },
                { "<domain><memtune><min_guarantee>lots</min_guarantee></memtune></domain>", 0 },
                { "<domain", 0 },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                g_assert_cmpuint(mc_libvirt_parse_min_guarantee(table[i].xml), ==, table[i].kib);
}

int main(int argc, char *argv[])
{
        g_test_init(&argc, &argv, NULL);
        g_test_set_nonfatal_assertions();

        g_test_add_func("/libvirt-meta/parse", test_parse);
        g_test_add_func("/libvirt-meta/parse-invalid", test_parse_invalid);
        g_test_add_func("/libvirt-meta/format-round-trip", test_format_round_trip);
        g_test_add_func("/libvirt-meta/min-guarantee", test_min_guarantee);

        return g_test_run();
}
