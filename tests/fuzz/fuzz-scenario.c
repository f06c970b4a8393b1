/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The simulator's scenario parser (sim_scenario_load_data) on any text, and the world it
 * builds. A file that does not load is refused with an error naming the origin and a line; a
 * file that loads gives a world that runs: its first simulated minute is stepped through.
 */

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-world.h"

#define FUZZ_CHECK(x)                                                                         \
        do {                                                                                  \
                if (!(x)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
                        abort();                                                              \
                }                                                                             \
        } while (0)

/* What the fuzzer may ask the world to simulate, at most: enough to reach every step kind. */
#define FUZZ_SIM_USEC (60 * UINT64_C(1000000))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = g_strndup((const char *) data, size);
        g_autoptr(GError) e = NULL;
        g_autoptr(SimScenario) sc = sim_scenario_load_data(text, "fuzz.ini", &e);

        if (!sc) {
                FUZZ_CHECK(e != NULL);
                FUZZ_CHECK(g_str_has_prefix(e->message, "fuzz.ini"));
                return 0;
        }
        FUZZ_CHECK(e == NULL);
        FUZZ_CHECK(sc->guests->len > 0);
        /* Many guests or tiny steps make the run long, not wrong: keep the fuzzer fast. */
        if (sc->guests->len > 64 || sc->step_s < 0.01)
                return 0;

        g_autofree char *config = sim_scenario_config_text(sc);
        FUZZ_CHECK(config != NULL);

        g_autoptr(SimWorld) w = sim_world_new(sc);
        FUZZ_CHECK(w != NULL);
        uint64_t step = sim_world_step_usec(w);
        FUZZ_CHECK(step > 0);
        for (uint64_t t = step; t <= FUZZ_SIM_USEC; t += step * 10)
                sim_world_advance_to(w, t);
        return 0;
}
