/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The local host's free memory is the kernel's MemAvailable, never free + buffers + cached:
 * the kernel's Cached includes Shmem (tmpfs, memfd, the shared memory behind virtiofs and
 * vhost-user guests), which cannot be given to a guest.
 */

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <libvirt/libvirt.h>
#include <unistd.h>

#include "hypervisor.h"

#include "memcoord/macro.h"

/* 16 GB host; 8 GB of guest RAM in memfd shows in Cached and Shmem. */
static const char shmem_heavy[] = "MemTotal:       16000000 kB\n"
                                  "MemFree:          500000 kB\n"
                                  "MemAvailable:    1200000 kB\n"
                                  "Buffers:          100000 kB\n"
                                  "Cached:          9000000 kB\n"
                                  "SwapCached:            0 kB\n"
                                  "Shmem:           8000000 kB\n";

static char *write_meminfo(const char *text)
{
        g_autoptr(GError) e = NULL;
        char *path = NULL;
        int fd = g_file_open_tmp("mc-meminfo-XXXXXX", &path, &e);

        g_assert_no_error(e);
        g_assert_true(g_file_set_contents(path, text, -1, &e));
        g_assert_no_error(e);
        close(fd);
        return path;
}

static void test_reader_takes_memavailable(void)
{
        g_autofree char *path = write_meminfo(shmem_heavy);
        McHostMemory m = {};

        g_assert_cmpint(mc_read_meminfo(path, &m), ==, 0);
        g_assert_cmpuint(m.total_kib, ==, 16000000);
        g_assert_cmpuint(m.free_kib, ==, 1200000);
        /* What free + buffers + cached would have said: guest RAM counted as free. */
        g_assert_cmpuint(m.free_kib, <, 500000 + 100000 + 9000000 - 8000000);
        g_unlink(path);
}

static void test_reader_needs_memavailable(void)
{
        g_autofree char *path = write_meminfo("MemTotal: 16000000 kB\nMemFree: 500000 kB\n");
        McHostMemory m = {};

        g_assert_cmpint(mc_read_meminfo(path, &m), ==, -ENODATA);
        g_unlink(path);
}

/* A local connection asks libvirt nothing about the host: its node stats have no MemAvailable. */
static void test_local_host_reads_meminfo(void)
{
        g_autofree char *path = write_meminfo(shmem_heavy);
        g_autofree char *uri = g_strdup_printf("test://%s", g_getenv("MC_NODE_XML"));
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        McHypervisor *h = NULL;
        McHostMemory m = {};

        g_assert_cmpint(sd_event_new(&event), >=, 0);
        g_assert_cmpint(mc_hypervisor_new(event, uri, NULL, NULL, &h), ==, 0);
        g_assert_cmpint(mc_hypervisor_connect(h), ==, 0);
        mc_meminfo_path = path;
        mc_hypervisor_reset_calls(h);
        for (int i = 0; i < 3; i++) {
                g_assert_cmpint(mc_hypervisor_host_memory(h, &m), ==, 0);
                g_assert_cmpuint(m.total_kib, ==, 16000000);
                g_assert_cmpuint(m.free_kib, ==, 1200000);
                g_assert_true(m.from_proc);
        }
        g_assert_cmpuint(mc_hypervisor_calls(h)->other_calls, ==, 0);
        mc_meminfo_path = "/proc/meminfo";
        mc_hypervisor_free(h);
        g_unlink(path);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_assert_cmpint(virEventRegisterDefaultImpl(), ==, 0);
        g_test_add_func("/hostmem/reader-takes-memavailable", test_reader_takes_memavailable);
        g_test_add_func("/hostmem/reader-needs-memavailable", test_reader_needs_memavailable);
        g_test_add_func("/hostmem/local-host-reads-meminfo", test_local_host_reads_meminfo);
        return g_test_run();
}
