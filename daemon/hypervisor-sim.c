/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The simulator backend: "sim:FILE". */

#include <errno.h>

#include "hypervisor.h"

static int sim_init(McHypervisor *h)
{
        return mc_hypervisor_fail(h, -EOPNOTSUPP, "%s: the simulator is not available yet", h->uri);
}

const McHypervisorOps mc_hypervisor_sim_ops = {
        .name = "sim",
        .init = sim_init,
};
