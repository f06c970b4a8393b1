#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The batch simulator's speed: a 3-guest 120-s scenario (target < 1 s) and a 50-guest 600-s
one (target < 10 s), each run REPS times; prints the command, the median and the range of the
whole process's wall time and the tool's own figures (simulated seconds, ticks, CPU per tick).
Exit status 1 if a median misses its target.

    bench-sim.py MEMCOORD_SIM SOURCE_ROOT [REPS]
"""

import json
import os
import statistics
import subprocess
import sys
import time

CASES = [  # scenario, target seconds
    ("tests/sim/bench-3.ini", 1.0),
    ("tests/sim/fleet-50.ini", 10.0),
]


def main():
    tool, root = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    failed = False
    print(f"{'scenario':<24} {'guests':>6} {'sim s':>6} {'ticks':>6} {'wall s median (min-max)':>26} "
          f"{'in-loop s':>9} {'CPU/tick us':>11} {'target':>7}")
    for rel, target in CASES:
        path = os.path.join(root, rel)
        cmd = [tool, "--json", path]
        walls, out = [], None
        for _ in range(reps):
            t = time.monotonic()
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
            walls.append(time.monotonic() - t)
            if r.returncode != 0:
                print(f"{rel}: exit {r.returncode}: {r.stderr.strip()}")
                return 1
            out = json.loads(r.stdout)
        med = statistics.median(walls)
        ok = med < target
        failed |= not ok
        print(f"{os.path.basename(rel):<24} {len(out['guests']):>6} {out['simulated_s']:>6.0f} {out['ticks']:>6} "
              f"{med:>8.3f} ({min(walls):.3f}-{max(walls):.3f}){'':>6} {out['wall_s']:>9.3f} "
              f"{out['cpu_per_tick_us']:>11.1f} {'< %gs' % target:>7} {'ok' if ok else 'MISSED'}")
        print(f"  command: {' '.join(cmd)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
