/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The state file: any text that loads as a state file is saved (which must succeed: it holds
 * only values the parser gave), and what was saved loads again and means the same, key for
 * key, masks included. Saving writes a real file (with its fsync) on /dev/shm when there is
 * one.
 */

#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

static char *state_dir, *state_path;

static void remove_state_dir(void)
{
        (void) g_unlink(state_path);
        (void) g_rmdir(state_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        const char *base = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();

        state_dir = g_build_filename(base, "memcoord-fuzz-XXXXXX", NULL);
        FUZZ_CHECK(g_mkdtemp(state_dir) != NULL);
        state_path = g_build_filename(state_dir, "state.conf", NULL);
        atexit(remove_state_dir);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = g_strndup((const char *) data, size);
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(McConfig) defaults = mc_config_new();
        g_autoptr(GError) e = NULL;

        if (!mc_config_load_state_data(c, text, "state.conf", &e)) {
                FUZZ_CHECK(e != NULL && g_str_has_prefix(e->message, "state.conf:"));
                FUZZ_CHECK(fuzz_config_equal(c, defaults, false));
                return 0;
        }
        fuzz_check_valid(c);

        if (!mc_config_save_state(c, state_path, &e)) {
                fprintf(stderr, "saving what loaded failed: %s\n", e->message);
                abort();
        }
        g_autoptr(McConfig) back = mc_config_new();
        if (!mc_config_load_state_file(back, state_path, &e)) {
                fprintf(stderr, "what was saved does not load: %s\n", e->message);
                abort();
        }
        FUZZ_CHECK(fuzz_config_equal(c, back, true));

        /* Saved once more, it is the same file. */
        g_autofree char *first = NULL, *second = NULL;
        FUZZ_CHECK(g_file_get_contents(state_path, &first, NULL, NULL));
        FUZZ_CHECK(mc_config_save_state(back, state_path, NULL));
        FUZZ_CHECK(g_file_get_contents(state_path, &second, NULL, NULL));
        /* GKeyFile keeps groups in insertion order, and the hash table's order may differ: compare
         * the settings, not the bytes, unless there is at most one domain. */
        if (g_hash_table_size(c->domains) <= 1)
                FUZZ_CHECK(strcmp(first, second) == 0);
        (void) g_unlink(state_path);
        return 0;
}
