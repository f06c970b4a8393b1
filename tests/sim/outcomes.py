#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The outcome table of every shipped scenario, one row per scenario (the worst guest for
each figure), as markdown: what tests/sim/README.md shows.

    outcomes.py MEMCOORD_SIM SOURCE_ROOT [memcoord-sim options, e.g. --set Policy=seed]
"""

import glob
import json
import os
import subprocess
import sys


def worst(guests, key, fn):
    vals = [g[key] for g in guests if g[key] is not None]
    return fn(vals) if vals else None


def f(v, d=0):
    return "-" if v is None else f"{v:.{d}f}"


def main():
    tool, root, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    print("| scenario | guests | OOM | below T max s | lowest free MiB | largest release % | returned 60 s % "
          "(worst) | rev/min (worst) | Σ actual GiB·s | host headroom MiB | budget headroom MiB | CPU/tick µs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for ini in sorted(glob.glob(os.path.join(root, "tests", "sim", "*.ini"))):
        r = subprocess.run([tool, "--json", ini] + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           check=False)
        if r.returncode != 0:
            print(f"| {os.path.basename(ini)} | exit {r.returncode}: {r.stderr.strip()} |")
            continue
        o = json.loads(r.stdout)
        g = o["guests"]
        print(f"| {os.path.basename(ini)} | {len(g)} | {sum(x['oom_kills'] for x in g)} "
              f"| {f(worst(g, 'below_t_max_s', max))} | {f(worst(g, 'lowest_free_mib', min))} "
              f"| {f(worst(g, 'largest_release_pct', max), 1)} | {f(worst(g, 'returned_60s_pct', min))} "
              f"| {f(worst(g, 'reversals_per_min', max), 2)} | {f(o['sum_actual_gib_s'])} "
              f"| {f(o['lowest_host_headroom_mib'])} | {f(o['lowest_budget_headroom_mib'])} "
              f"| {f(o['cpu_per_tick_us'], 1)} |")


if __name__ == "__main__":
    sys.exit(main())
