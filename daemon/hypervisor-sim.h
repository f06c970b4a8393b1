/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The simulator backend ("sim:FILE"), beyond the ops table: what the batch tool needs to drive
 * it. By default its clock is the host's, scaled by the handle's speed (memcoordd
 * --sim-speed): each call advances the world to the virtual now. In manual mode the world
 * moves only when mc_sim_advance_to() is called, as fast as the caller likes.
 */

#include <stdbool.h>
#include <stdint.h>

#include "hypervisor.h"
#include "sim-world.h"

/* What the daemon did to the world, for a recorder. Any callback may be NULL. */
typedef struct McSimObserver {
        /* After each collect: the readings handed to the daemon. */
        void (*collected)(void *userdata, const McReading *readings, size_t n);
        /* After each set_target call: r is what the call returned. */
        void (*target_set)(void *userdata, SimGuest *g, uint64_t kib, int r);
} McSimObserver;

/* The world of a "sim:" handle; NULL for any other. */
SimWorld *mc_sim_world(McHypervisor *h);
/* Manual clock: the world stands still between mc_sim_advance_to() calls. */
void mc_sim_set_manual_clock(McHypervisor *h, bool manual);
void mc_sim_advance_to(McHypervisor *h, uint64_t virtual_usec);
void mc_sim_set_observer(McHypervisor *h, const McSimObserver *o, void *userdata);
/* Replaces the scenario (taking ownership of sc) and starts its world afresh; before connect. */
void mc_sim_set_scenario(McHypervisor *h, SimScenario *sc);
/* Realtime (epoch microseconds) of the world's t = 0. */
uint64_t mc_sim_epoch_usec(McHypervisor *h);
