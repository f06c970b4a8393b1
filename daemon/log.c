/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#define SD_JOURNAL_SUPPRESS_LOCATION
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

static void send_entry(const char *file, int line, const char *func, int level, const char *message_id,
                       const char *msg, const McLogField *fields, size_t n_fields)
{
        /* MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MESSAGE_ID, then the fields. */
        g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func(g_free);
        g_autofree struct iovec *iov = NULL;
        g_autofree char *code_file = g_strdup_printf("CODE_FILE=%s", file);
        g_autofree char *code_line = g_strdup_printf("CODE_LINE=%i", line);

        g_ptr_array_add(items, g_strdup_printf("MESSAGE=%s", msg));
        g_ptr_array_add(items, g_strdup_printf("PRIORITY=%i", level));
        g_ptr_array_add(items, g_strdup("SYSLOG_IDENTIFIER=memcoordd"));
        if (message_id)
                g_ptr_array_add(items, g_strdup_printf("MESSAGE_ID=%s", message_id));
        for (size_t i = 0; i < n_fields; i++) {
                if (fields[i].is_num)
                        g_ptr_array_add(items,
                                        g_strdup_printf("%s=%" PRIu64, fields[i].name, fields[i].num));
                else if (fields[i].str)
                        g_ptr_array_add(items, g_strdup_printf("%s=%s", fields[i].name, fields[i].str));
        }

        iov = g_new0(struct iovec, items->len);
        for (unsigned i = 0; i < items->len; i++)
                iov[i] = (struct iovec){ .iov_base = items->pdata[i], .iov_len = strlen(items->pdata[i]) };
        /* Nowhere to report a failure to log. */
        (void) sd_journal_sendv_with_location(code_file, code_line, func, iov, (int) items->len);
}

void mc_log_struct(const char *file, int line, const char *func, int level, const char *message_id,
                   const McLogField *fields, size_t n_fields, const char *fmt, ...)
{
        int saved_errno = errno; /* for %m */
        char msg[1024];
        va_list ap;

        if (level > max_level)
                return;
        va_start(ap, fmt);
        errno = saved_errno;
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        /* Messages carry guest names and libvirt's errors: escaped as a whole, each stays one
         * line that reads as it is (memcoord/escape.h). Fields such as MEMCOORD_DOMAIN keep the
         * name as it is: journal fields may hold any byte. */
        g_autofree char *escaped = mc_escape(msg);
        if (to_journal)
                send_entry(file, line, func, level, message_id, escaped, fields, n_fields);
        else
                fprintf(stderr, "memcoordd: %s\n", escaped);
        errno = saved_errno;
}

void mc_log_balloon_at(const char *file, int line, const char *func, const char *domain, const char *uuid,
                       uint64_t from_kib, uint64_t to_kib, const char *reason, bool dry_run)
{
        const McLogField fields[] = {
                MC_LOG_DOMAIN(domain, uuid),
                MC_LOG_U64("MEMCOORD_FROM_KIB", from_kib),
                MC_LOG_U64("MEMCOORD_TO_KIB", to_kib),
                MC_LOG_STR("MEMCOORD_REASON", reason),
                MC_LOG_U64("MEMCOORD_DRY_RUN", dry_run ? 1 : 0),
        };

        mc_log_struct(file, line, func, LOG_INFO,
                      dry_run ? MC_MESSAGE_BALLOON_DRY_RUN : MC_MESSAGE_BALLOON_CHANGED, fields,
                      ELEMENTSOF(fields), "%s: %llu MiB -> %llu MiB (%s)%s", domain,
                      (unsigned long long) (from_kib / 1024), (unsigned long long) (to_kib / 1024), reason,
                      dry_run ? " [dry-run]" : "");
}
