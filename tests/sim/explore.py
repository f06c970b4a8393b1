#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Random workloads in the simulator: both policies on scenarios nobody wrote by hand.

Each scenario has 2 to 4 guests; each guest idles, then follows 1 to 4 random steps (ramps
of 5 to 60 MiB/s, jumps of 50 to 300 MiB, holds, frees, sawtooth and triangle cycles of 10
to 60 s), frees and idles. The host budget covers every guest's peak with its kernel, its
reserve and 10 % to spare, so no guest needs to run short: for both policies the invariants
must hold (memcoord-sim --check), and for `adaptive` no OOM kill. Shown, not asserted: the
guests under T for more than 3 s in a row (a guest that stopped growing holds T and its rate
over the reaction time, and a fast ramp that starts from there can take it under T for a few
seconds: tests/sim/README.md, "Random workloads"), the reversals and the memory returned (a
random schedule's next step may want again, within 60 s, what a free gave back, and a
triangle of 40-60 s is longer than the hold: tests/sim/sweep.py). The same seed gives the
same scenarios.

    tests/sim/explore.py --sim build/daemon/memcoord-sim [--seed N] [--count N] [--keep DIR]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep import MAX_BELOW_T_S, SETTINGS  # noqa: E402

KERNEL_MIB = 92 + 25       # the model's kernel at rest and its drift while holding
KERNEL_GROWTH = 0.03       # per MiB held
RESERVE_MIB = 200          # 2T, the idle reserve a guest keeps


def schedule(rng):
    """A random schedule, the most it holds at once, and its fastest rise (MiB/s; jumps: inf)."""
    steps, held, peak = [f"idle:{rng.randint(15, 40)}"], 0, 0
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(["ramp", "ramp", "jump", "saw", "cycle", "free", "hold"])
        if kind == "ramp":
            size, rate = rng.randint(50, 600), rng.choice([5, 10, 15, 20, 30, 40, 50, 60])
            steps += [f"ramp:+{size}:{max(1, size // rate)}", f"hold:{rng.randint(5, 40)}"]
            held += size
        elif kind == "jump":
            size = rng.randint(50, 300)
            steps += [f"jump:+{size}", f"hold:{rng.randint(5, 40)}"]
            held += size
        elif kind == "saw":
            high, period = rng.randint(100, 400), rng.randint(10, 60)
            steps.append(f"saw:+{high}:{period}:{rng.randint(2, 5)}")
            peak = max(peak, held + high)
        elif kind == "cycle":
            low = rng.randint(0, 100)
            high = low + rng.randint(100, 400)
            steps.append(f"cycle:+{low}:+{high}:{rng.randint(20, 60)}:{rng.randint(2, 4)}")
            peak = max(peak, held + high)
            held += low  # where the cycles end
        elif kind == "free":
            steps += ["free", f"idle:{rng.randint(10, 40)}"]
            held = 0
        else:
            steps.append(f"hold:{rng.randint(5, 30)}")
        peak = max(peak, held)
    steps += ["free", "idle:70"]
    return ",".join(steps), peak


def scenario(rng, i):
    text, need = "", 0
    for j in range(rng.randint(2, 4)):
        sched, peak = schedule(rng)
        text += (f"[Guest g{j}]\nMaxMiB={max(1024, 512 + peak + 300)}\n"
                 f"ReadySec={rng.uniform(0, 3):.1f}\nSchedule={sched}\n\n")
        need += max(512, peak * (1 + KERNEL_GROWTH) + KERNEL_MIB + RESERVE_MIB)
    budget = int(need * 1.1) + 100
    return (f"[Scenario]\nDescription=random workloads {i}\n\n[Host]\nTotalMiB=24576\nOtherMiB=600\n\n"
            f"{SETTINGS}HostBudget={budget}M\n\n{text}")


def run(sim, path, policy):
    r = subprocess.run([sim, path, "--json", "--check", "--set", f"Policy={policy}"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode not in (0, 2):
        raise RuntimeError(f"{path} {policy}: memcoord-sim exited {r.returncode}: {r.stderr.strip()}")
    d = json.loads(r.stdout)
    d["check_failed"] = r.returncode == 2
    return d


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", required=True, help="the memcoord-sim binary")
    ap.add_argument("--seed", type=int, default=1, help="the generator's seed (default 1)")
    ap.add_argument("--count", type=int, default=200, help="scenarios (default 200)")
    ap.add_argument("--keep", metavar="DIR", help="write the scenarios here (else a temporary directory)")
    args = ap.parse_args()
    if args.count < 1:
        ap.error("--count must be at least 1")
    if not os.access(args.sim, os.X_OK):
        ap.error(f"--sim {args.sim}: not an executable")

    rng = random.Random(args.seed)
    tally = {p: {"kills": 0, "below": 0, "crossed": 0, "low": [], "rev": [], "cyc": [], "sum": 0.0}
             for p in ("seed", "adaptive")}
    problems, shown = [], []
    with tempfile.TemporaryDirectory(prefix="mc-explore-") as tmp:
        out = args.keep or tmp
        os.makedirs(out, exist_ok=True)
        for i in range(args.count):
            path = os.path.join(out, f"random-{args.seed}-{i:03d}.ini")
            name = path if args.keep else os.path.basename(path)
            with open(path, "w") as f:
                f.write(scenario(rng, i))
            for policy, t in tally.items():
                d = run(args.sim, path, policy)
                t["sum"] += d["sum_actual_gib_s"]
                if d["check_failed"] or d["violations"]:
                    t["crossed"] += 1
                    problems.append(f"{name} {policy}: invariant crossed: {d['violations'][:2]}")
                for g in d["guests"]:
                    t["kills"] += g["oom_kills"]
                    t["below"] += g["below_t_max_s"] > MAX_BELOW_T_S
                    t["low"].append(g["lowest_free_mib"])
                    t["rev"].append(g["reversals_per_min"])
                    if g["reversals_per_min_cyclic"] >= 0:
                        t["cyc"].append(g["reversals_per_min_cyclic"])
                    if policy == "adaptive" and g["oom_kills"]:
                        problems.append(f"{name} {g['name']}: {g['oom_kills']} OOM kill(s)")
                    if policy == "adaptive" and g["below_t_max_s"] > MAX_BELOW_T_S:
                        shown.append(f"{name} {g['name']}: {g['below_t_max_s']:.0f} s in a row under T")

    n = len(tally["seed"]["low"])
    print(f"{args.count} random scenarios (seed {args.seed}), {n} guests; seed / adaptive:")
    print("| figure | seed | adaptive |\n|---|---|---|")
    rows = [("OOM kills", lambda t: t["kills"]),
            (f"guests under T for more than {MAX_BELOW_T_S} s in a row", lambda t: t["below"]),
            ("runs that crossed an invariant", lambda t: t["crossed"]),
            ("lowest free MiB, 5th percentile of guests", lambda t: f"{quantile(t['low'], 0.05):.0f}"),
            ("lowest free MiB, least", lambda t: f"{min(t['low']):.0f}"),
            ("reversals per minute on steady loads, most", lambda t: f"{max(t['rev']):.2f}"),
            (f"reversals per minute on cyclic loads, median of {len(tally['seed']['cyc'])} guests",
             lambda t: f"{quantile(t['cyc'], 0.5):.2f}"),
            ("guests over 1 reversal per minute on their cyclic load", lambda t: sum(x > 1 for x in t["cyc"])),
            ("Σ actual, GiB·s", lambda t: f"{t['sum']:.0f}")]
    for label, f in rows:
        print(f"| {label} | {f(tally['seed'])} | {f(tally['adaptive'])} |")
    for p in shown:
        print(f"# shown: {p}")
    for p in problems:
        print(f"# {p}")
    if (problems or shown) and not args.keep:
        print("# --keep DIR writes the scenarios, to run them again with memcoord-sim")
    print(f"# {len(problems)} problem(s)" if problems else "# every scenario holds")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
