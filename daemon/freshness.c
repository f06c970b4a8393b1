/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "freshness.h"

#include <stddef.h>

#define USEC_PER_SEC UINT64_C(1000000)

uint64_t mc_freshness_max_age(uint64_t interval_usec)
{
        uint64_t two = 2 * interval_usec;

        return two > 3 * USEC_PER_SEC ? two : 3 * USEC_PER_SEC;
}

bool mc_freshness_update(McFreshness *f, const McFreshnessInput *in, uint64_t *ret_age_usec)
{
        uint64_t age;

        if (in->synthetic) {
                *f = (McFreshness){ .valid = true,
                                    .last_update = in->last_update,
                                    .changed_at_usec = in->now_mono_usec };
                if (ret_age_usec)
                        *ret_age_usec = 0;
                return true;
        }

        if (in->last_update <= 0) {
                *f = (McFreshness){};
                if (ret_age_usec)
                        *ret_age_usec = UINT64_MAX;
                return false;
        }

        uint64_t stamp_usec = (uint64_t) in->last_update * USEC_PER_SEC;
        if (!f->valid) {
                /* First sight: trust the stamp as far as the host's clock vouches for it. */
                age = in->now_real_usec > stamp_usec ? in->now_real_usec - stamp_usec : 0;
                *f = (McFreshness){ .valid = true,
                                    .last_update = in->last_update,
                                    .changed_at_usec =
                                            age < in->now_mono_usec ? in->now_mono_usec - age : 0 };
        } else if (in->last_update != f->last_update) {
                f->last_update = in->last_update;
                f->changed_at_usec = in->now_mono_usec;
                age = 0;
        } else
                age = in->now_mono_usec - f->changed_at_usec;

        if (ret_age_usec)
                *ret_age_usec = age;
        return age <= in->max_age_usec;
}
