/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "memcoord/escape.h"

static int max_level = LOG_INFO;
static bool to_journal;

void mc_log_set_max_level(int level)
{
        max_level = level;
}

/* $JOURNAL_STREAM names the device and inode of the journal stream stderr is connected to. */
void mc_log_setup(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        to_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) >= 0 &&
                     st.st_dev == dev && st.st_ino == ino;
}

/* Messages carry guest names and libvirt's errors: escaped as a whole, each stays one line
 * that reads as it is (memcoord/escape.h). */
static void log_line(int level, const char *msg)
{
        g_autofree char *escaped = mc_escape(msg);

        if (to_journal)
                sd_journal_send("MESSAGE=%s", escaped, "PRIORITY=%i", level, NULL);
        else
                fprintf(stderr, "memcoordd: %s\n", escaped);
}

void mc_log_full(int level, const char *fmt, ...)
{
        char buf[1024];
        va_list ap;

        if (level > max_level)
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        log_line(level, buf);
}

void mc_log_balloon(const char *domain, const char *uuid, uint64_t from_kib, uint64_t to_kib,
                    const char *reason, bool dry_run)
{
        char msg[512];

        if (LOG_INFO > max_level)
                return;
        g_autofree char *name = mc_escape(domain);
        snprintf(msg, sizeof(msg), "%s: %llu MiB -> %llu MiB (%s)%s", name,
                 (unsigned long long) (from_kib / 1024), (unsigned long long) (to_kib / 1024), reason,
                 dry_run ? " [dry-run]" : "");
        if (!to_journal) {
                fprintf(stderr, "memcoordd: %s\n", msg);
                return;
        }
        /* MEMCOORD_DOMAIN is the name as it is: journal fields may hold any byte. */
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%i", LOG_INFO,
                        "MESSAGE_ID=5b0b7e3f2a8c4d3e9a1f6c2d4e8b7a10", "MEMCOORD_DOMAIN=%s", domain,
                        "MEMCOORD_UUID=%s", uuid, "MEMCOORD_FROM_KIB=%llu", (unsigned long long) from_kib,
                        "MEMCOORD_TO_KIB=%llu", (unsigned long long) to_kib, "MEMCOORD_REASON=%s", reason,
                        "MEMCOORD_DRY_RUN=%i", dry_run ? 1 : 0, NULL);
}
