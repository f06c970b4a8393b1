#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The policy sweep: both policies on generated workloads in the simulator.

Ramps of 5 to 80 MiB/s, instant steps of 50 to 400 MiB, sawtooth and triangle cycles of 10
to 60 s, page-cache reads of 200 to 1500 MiB beside a consumer, idle fleets of 3 to 50
guests, a host whose other use grows until it runs short, and an over-committed crunch. For both policies
the invariants must hold (memcoord-sim --check: host floor and budget never crossed, no claim
above the claim fraction, nothing moved on stale stats); for `adaptive` the outcomes below.
Prints the table, seed and adaptive side by side, and exits 1 when an assertion fails.

    tests/sim/sweep.py --sim build/daemon/memcoord-sim [--markdown FILE] [-k NAME]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

T_MIB = 100
IDLE_RESERVE_MIB = 2 * T_MIB

SETTINGS = """[Settings]
IntervalSec=1
DomainThreshold=100M
HostThreshold=200M
ClaimFraction=0.10
GrantFactor=2
DefaultMin=256M
DeadBand=1M
"""

# What adaptive must reach (issue-level outcomes), and why each bound is what it is.
MAX_BELOW_T_S = 3        # a consuming guest below T at most 3 s in a row while memory is available
MIN_RETURNED_PCT = 95    # of what a workload frees, within 60 s ...
INFLATE_MIBS = 25        # ... where the balloon can inflate that fast (the model's measured speed)
MAX_REVERSALS_PER_MIN = 1   # on a steady load, and on a cyclic one (reversals_per_min_cyclic)
# A triangle load (up over half its period, down over the other) reaches its high once a
# period, so a guest that is not to follow it must be held whole from one high to the next.
# The hold keeps a high whole for 15 s and to nothing by 30 s (policy.c, PEAK_HOLD_FULL,
# GRANT_HOLD): longer, and what a workload frees would not be back within 60 s. Triangles of
# longer periods are shown, not asserted.
TRIANGLE_HELD_MAX_S = 25
IDLE_BAND_MIB = (25, 5)  # idle guests settle at 2T: one claim on a stale reading may overshoot by ~c x 2T


class Case:
    def __init__(self, name, family, text, consumers=(), cache_readers=(), idle=(), settle=None,
                 max_free_mib=None, oom_free=True, crunch=False, ranked=None, cyclic=False):
        self.name, self.family, self.text = name, family, text
        self.consumers = list(consumers)      # below T, OOM, returned checks
        self.cache_readers = list(cache_readers)
        self.idle = list(idle)                # settle at the idle reserve
        self.max_free_mib = max_free_mib      # the workload's freed MiB (for the physical bound)
        self.oom_free = oom_free              # adaptive must have no OOM kill
        self.crunch = crunch                  # over-committed: kills counted beside equal shares'
        self.ranked = ranked                  # the guest the admin ranked first (Weight=): it must live
        self.cyclic = cyclic                  # the consumers' reversals on their cyclic load asserted


def scenario(desc, guests, budget=None, host="", duration=None):
    s = f"[Scenario]\nDescription={desc}\n"
    if duration:
        s += f"DurationSec={duration}\n"
    s += host + "\n" + SETTINGS
    if budget:
        s += f"HostBudget={budget}M\n"
    return s + "\n" + guests


def cases():
    out = []
    for speed in (5, 10, 20, 30, 40, 50, 60, 80):
        size = 600
        secs = size / speed
        g = (f"[Guest busy]\nMaxMiB=2048\nSchedule=idle:20,ramp:{size}:{secs:.1f},hold:20,free,idle:70\n\n"
             "[Guest idle]\nCount=2\nStaggerSec=0.3\n")
        out.append(Case(f"ramp-{speed:02d}", "ramp", scenario(f"ramp {speed} MiB/s", g),
                        consumers=["busy"], idle=["idle-01", "idle-02"], max_free_mib=size))
    for size in (50, 100, 200, 300, 400):
        g = (f"[Guest jump]\nMaxMiB=2048\nSchedule=idle:20,jump:{size},hold:20,free,idle:70\n\n"
             "[Guest idle]\nCount=2\nStaggerSec=0.3\n")
        out.append(Case(f"step-{size:03d}", "step", scenario(f"step of {size} MiB", g),
                        consumers=["jump"], idle=["idle-01", "idle-02"], max_free_mib=size))
    for period in (10, 20, 30, 45, 60):
        count = max(2, 150 // period)
        g = (f"[Guest saw]\nMaxMiB=2048\nSchedule=idle:20,saw:250:{period}:{count},idle:70\n\n"
             "[Guest idle]\n")
        out.append(Case(f"saw-{period:02d}", "sawtooth", scenario(f"sawtooth 250 MiB every {period} s", g),
                        consumers=["saw"], idle=["idle"], max_free_mib=250, cyclic=True))
    for period in (10, 20, 40, 60):
        count = max(2, 150 // period)
        g = (f"[Guest tri]\nMaxMiB=2048\nSchedule=idle:20,cycle:0:250:{period}:{count},idle:70\n\n"
             "[Guest idle]\n")
        out.append(Case(f"triangle-{period:02d}", "triangle",
                        scenario(f"triangle 0-250 MiB, period {period} s", g),
                        consumers=["tri"], idle=["idle"], max_free_mib=250,
                        cyclic=period <= TRIANGLE_HELD_MAX_S))
    for size in (200, 500, 1000, 1500):
        g = (f"[Guest reader]\nCurrentMiB=768\nSchedule=idle:10,cache:{size}:20,idle:150\n\n"
             "[Guest busy]\nSchedule=idle:40,ramp:300:30,hold:40,free,idle:70\n\n[Guest idle]\n")
        out.append(Case(f"cache-{size:04d}", "page cache", scenario(f"{size} MiB into the page cache", g, budget=1800),
                        consumers=["busy"], cache_readers=["reader"], max_free_mib=300))
    for n in (3, 10, 25, 50):
        g = f"[Guest idle]\nCount={n}\nCurrentMiB=1024\nMaxMiB=2048\nStaggerSec=0.2\n"
        out.append(Case(f"fleet-{n:02d}", "idle fleet", scenario(f"{n} idle guests", g, duration=120),
                        idle=[f"idle-{i:02d}" for i in range(1, n + 1)]))
    host = "[Host]\nTotalMiB=4096\nOtherMiB=1024\nOtherSchedule=idle:30,ramp:1200:120,hold\n"
    g = ("[Guest a]\nSchedule=idle:20,ramp:350:35,hold:120,free,idle:60\n\n"
         "[Guest b]\nReadySec=2\nSchedule=idle:20,ramp:350:35,hold:120,free,idle:60\n\n"
         "[Guest c]\nReadySec=4\nSchedule=idle:60,ramp:200:20,hold:90,free,idle:60\n\n[Guest idle]\n")
    out.append(Case("host-short", "host short", scenario("the host runs short", g, host=host, duration=240),
                    consumers=["a", "b", "c"], max_free_mib=350))
    # Over-committed: three guests each want ~1.1 GiB, under budgets of 2.0-2.8 GiB, ramping
    # together or 5 s apart. Over the family adaptive must kill fewer than equal shares.
    for budget in (2000, 2200, 2400, 2600, 2800):
        for stagger in (1, 5):
            g = "".join(f"[Guest c{i}]\nMaxMiB=1536\nReadySec={i * stagger}\n"
                        "Schedule=idle:20,ramp:900:60,hold:30,free,idle:40\n\n" for i in range(1, 4))
            out.append(Case(f"crunch-{budget}-{stagger}", "over-committed",
                            scenario(f"three guests want 1.1 GiB each, budget {budget} MiB", g, budget=budget),
                            oom_free=False, crunch=True))
            # The same with one guest ranked above the others by the admin: adaptive keeps it
            # alive; equal shares (by weight) let all three run out together.
            out.append(Case(f"ranked-{budget}-{stagger}", "over-committed, ranked",
                            scenario(f"three guests want 1.1 GiB each, budget {budget} MiB, c2 ranked first",
                                     g + "[Domain c2]\nWeight=300\n", budget=budget),
                            oom_free=False, crunch=True, ranked="c2"))
    return out


def run(sim, path, policy, csv_path):
    r = subprocess.run([sim, path, "--json", "--check", "--set", f"Policy={policy}", "--csv", csv_path],
                       capture_output=True, text=True, timeout=300)
    if r.returncode not in (0, 2):
        raise RuntimeError(f"{path} {policy}: memcoord-sim exited {r.returncode}: {r.stderr.strip()}")
    d = json.loads(r.stdout)
    d["check_failed"] = r.returncode == 2
    samples = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            samples.setdefault(row["guest"], []).append(row)
    d["samples"] = samples
    return d


def guest(d, name):
    for g in d["guests"]:
        if g["name"] == name:
            return g
    raise KeyError(f"no guest {name} in the outcome")


def final_headroom(d, name):
    """free + page cache of the guest's last running sample: what it keeps to itself."""
    rows = [r for r in d["samples"].get(name, []) if r["running"] == "1"]
    r = rows[-1]
    return float(r["free_mib"]) + float(r["cache_mib"]), float(r["actual_mib"])


def first_actual(d, name):
    rows = [r for r in d["samples"].get(name, []) if r["running"] == "1" and float(r["actual_mib"]) > 0]
    return float(rows[0]["actual_mib"])


def check(case, a, s):
    """Problems with the adaptive run a (s: seed's, same scenario)."""
    problems = []
    for run_, pol in ((a, "adaptive"), (s, "seed")):
        if run_["check_failed"] or run_["violations"]:
            problems.append(f"{pol}: invariant crossed: {run_['violations'][:2]}")
    for name in case.consumers:
        g = guest(a, name)
        if case.oom_free and g["oom_kills"]:
            problems.append(f"{name}: {g['oom_kills']} OOM kill(s)")
        if g["below_t_max_s"] > MAX_BELOW_T_S:
            problems.append(f"{name}: below T for {g['below_t_max_s']:.0f} s in a row")
        ret = g["returned_60s_pct"]
        physical = case.max_free_mib is None or case.max_free_mib / INFLATE_MIBS <= 40
        if physical and ret is not None and 0 <= ret < MIN_RETURNED_PCT:
            problems.append(f"{name}: returned {ret:.0f} % within 60 s")
        if g["reversals_per_min"] > MAX_REVERSALS_PER_MIN:
            problems.append(f"{name}: {g['reversals_per_min']:.2f} reversals per minute")
        if case.cyclic and g["reversals_per_min_cyclic"] > MAX_REVERSALS_PER_MIN:
            problems.append(f"{name}: {g['reversals_per_min_cyclic']:.2f} reversals per minute on its cyclic load")
    if case.ranked and guest(a, case.ranked)["oom_kills"]:
        problems.append(f"{case.ranked}: ranked first by the admin, yet OOM-killed")
    for name in case.cache_readers:
        g = guest(a, name)
        start = first_actual(a, name)
        if g["peak_actual_mib"] > start + 1:
            problems.append(f"{name}: grown by {g['peak_actual_mib'] - start:.0f} MiB for its page cache")
        headroom, _ = final_headroom(a, name)
        if headroom > IDLE_RESERVE_MIB + IDLE_BAND_MIB[0] + 5:
            problems.append(f"{name}: still {headroom:.0f} MiB of free + cache at the end")
    for name in case.idle:
        headroom, _ = final_headroom(a, name)
        if not IDLE_RESERVE_MIB - IDLE_BAND_MIB[0] <= headroom <= IDLE_RESERVE_MIB + IDLE_BAND_MIB[1]:
            problems.append(f"{name}: idle guest settled at {headroom:.0f} MiB free")
        if guest(a, name)["reversals_per_min"] > MAX_REVERSALS_PER_MIN:
            problems.append(f"{name}: reversals")
    return problems


def summary(d, case):
    names = case.consumers or case.cache_readers or case.idle or [g["name"] for g in d["guests"]]
    gs = [guest(d, n) for n in names] if names else d["guests"]
    if case.crunch:
        gs = d["guests"]
    rets = [g["returned_60s_pct"] for g in gs if g["returned_60s_pct"] is not None and g["returned_60s_pct"] >= 0]
    return {
        "oom": sum(g["oom_kills"] for g in d["guests"]),
        "below": max(g["below_t_max_s"] for g in gs),
        "low": min(g["lowest_free_mib"] for g in gs),
        "ret": min(rets) if rets else None,
        "rev": max(max(g["reversals_per_min"], g["reversals_per_min_cyclic"]) for g in gs),
        "sum": d["sum_actual_gib_s"],
    }


def fmt(x):
    r = "-" if x["ret"] is None else f"{x['ret']:.0f}"
    return f"{x['oom']} | {x['below']:.0f} | {x['low']:.0f} | {r} | {x['rev']:.2f} | {x['sum']:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", required=True, help="the memcoord-sim binary")
    ap.add_argument("--markdown", help="also write the table here")
    ap.add_argument("-k", help="only the cases whose name contains this")
    args = ap.parse_args()

    header = ("| case | family | OOM S / A | longest below T s S / A | lowest free MiB S / A | returned % S / A "
              "| reversals/min S / A | Σ actual GiB·s S / A | adaptive |\n|---|---|---|---|---|---|---|---|---|")
    lines = [header]
    failures = 0
    crunch_kills = {"adaptive": 0, "seed": 0}
    ranked_kills = {"adaptive": 0, "seed": 0}
    with tempfile.TemporaryDirectory(prefix="mc-sweep-") as tmp:
        for case in cases():
            if args.k and args.k not in case.name:
                continue
            path = os.path.join(tmp, case.name + ".ini")
            with open(path, "w") as f:
                f.write(case.text)
            a = run(args.sim, path, "adaptive", os.path.join(tmp, case.name + "-a.csv"))
            s = run(args.sim, path, "seed", os.path.join(tmp, case.name + "-s.csv"))
            problems = check(case, a, s)
            if case.crunch:
                kills = ranked_kills if case.ranked else crunch_kills
                kills["adaptive"] += sum(g["oom_kills"] for g in a["guests"])
                kills["seed"] += sum(g["oom_kills"] for g in s["guests"])
            failures += bool(problems)
            sa, ss = summary(a, case), summary(s, case)
            pair = lambda k, f: f"{f(ss[k])} / {f(sa[k])}"
            num = lambda v: "-" if v is None else (f"{v:.0f}" if isinstance(v, float) else str(v))
            lines.append(f"| {case.name} | {case.family} | {pair('oom', num)} | {pair('below', num)} | "
                         f"{pair('low', num)} | {pair('ret', num)} | {pair('rev', lambda v: f'{v:.2f}')} | "
                         f"{pair('sum', num)} | {'ok' if not problems else 'FAIL'} |")
            for p in problems:
                print(f"# {case.name}: {p}")
    # Over-committed, ranked by the admin or not: fewer kills than the seed's shares, asserted
    # (with the ranked guest alive in every run, in check()).
    for label, kills, seed_name in (("ranked", ranked_kills, "shares by weight"),
                                    ("equal weights", crunch_kills, "equal shares")):
        if kills["adaptive"] >= kills["seed"] and kills["seed"] > 0:
            print(f"# over-committed, {label}: {kills['adaptive']} OOM kills under adaptive, not fewer "
                  f"than the {kills['seed']} of {seed_name}")
            failures += 1
        print(f"# over-committed, {label}: {kills['adaptive']} OOM kills under adaptive, "
              f"{kills['seed']} with {seed_name} (asserted: fewer)")
    lines.append(f"\nOver-committed runs, OOM kills in all: one guest ranked first, seed (shares by weight) "
                 f"{ranked_kills['seed']}, adaptive {ranked_kills['adaptive']}; equal weights, seed (equal "
                 f"shares) {crunch_kills['seed']}, adaptive {crunch_kills['adaptive']}.")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    print(f"# {failures} case(s) failed" if failures else "# every case holds")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
