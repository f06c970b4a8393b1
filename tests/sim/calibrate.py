#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The simulator against the real guests: the four real-guest e2e scenarios (tests/e2e), run
by memcoord-sim on tests/sim/e2e-*.ini, compared with what the real guests did.

    calibrate.py --sim MEMCOORD_SIM --root SOURCE_ROOT [--out DIR] [--plots DIR] [--policy P] [--check]

The real side is a recorded run, tests/e2e/traces/scenario-KEY.{csv,json} (the e2e sampler's
1 Hz balloon stats and the run's metadata), when the tree has one; otherwise the figures of
tests/e2e/README.md ("Figures", daemon 82c4708), written out in REAL_FIGURES below. The
simulated figures are measured the way tests/e2e measures the real ones: from the 1 Hz samples
of what libvirt reports (balloon.current, the guest's last stats), not from the model's truth.

Per guest it compares the peak actual, the lowest unused, the longest run below T and the
memory returned within 60 s of a workload's end, each against a stated tolerance (TOLERANCE),
prints the table, writes DIR/calibration.md and draws one PNG per scenario (real and simulated
actual and unused side by side). With --check the exit status is 1 if a figure is out of its
tolerance.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

MIB = 1024
T_MIB = 100.0
DEAD_BAND_MIB = 1.0
U_MIB = 91.0
RETURN_WINDOW_S = 60.0
NOTHING_TO_RETURN_MIB = 32.0

# How close the simulator must come, per figure: (absolute, relative); a figure passes when
# |sim - real| <= max(absolute, relative x real).
TOLERANCE = {
    "oom_kills": (0.0, 0),          # the same kills, exactly
    "peak_mib": (40.0, 0.05),       # the balloon's end point: what the policy granted
    "lowest_unused_mib": (25.0, 0), # how close to the OOM point (~50 MiB between T and it)
    "below_t_max_s": (12.0, 0),     # the ramp's time under T (the real ones ran 15-33 s)
    "returned_pct": (10.0, 0),      # memory back within 60 s
}

# What the test asserts: every figure but below_t_max_s for every guest of the four e2e
# scenarios, and below_t_max_s for at least BELOW_T_SHARE of those guests: the time a guest
# spends just under T hangs on single grants, the least robust figure of a run (two real runs
# of scenario 1 gave 24 and 16 s), and the simulated guests sit under T shorter than the real
# ones (scenario 2: 4-8 s against 31-33; see README.md, "Calibration"). The scenarios that only have traces (fast-ramp, page-cache,
# sawtooth) are compared and shown, not asserted.
ASSERTED = ("oom_kills", "peak_mib", "lowest_unused_mib", "returned_pct")
BELOW_T_SHARE = 2 / 3

# tests/e2e/README.md, "Figures": `meson test --suite e2e` at daemon 82c4708 (seed policy).
# scenario -> sim guest name -> (peak MiB, lowest unused MiB, below T max s, returned %); no
# OOM kill in any of them.
REAL_FIGURES = {
    "1": {"busy": (846, 74, 24, 100), "idle1": (511, 200, 0, None), "idle2": (511, 200, 0, None)},
    "2": {"a": (608, 78, 31, 99), "b": (607, 71, 33, 99), "c": (615, 71, 33, 99)},
    "3": {"long": (901, 76, 32, 100), "short": (596, 75, 15, 99), "idle": (511, 200, 0, None)},
    "jump": {"jump": (641, 47, 22, 100), "idle1": (511, 164, 0, None), "idle2": (511, 164, 0, None)},
}
SCENARIOS = ["1", "2", "3", "jump"]
EXTRA_SCENARIOS = ["fast-ramp", "page-cache", "sawtooth"]  # compared when the tree has their traces


def figures(series, held, oom):
    """series: [(t, actual MiB, unused MiB)] at 1 Hz; held: [(t, held MiB)] or None."""
    peak = max(a for _, a, _ in series)
    lowest = min(u for _, _, u in series)
    run = best = 0.0
    prev_t = None
    for t, _, u in series:
        dt = (t - prev_t) if prev_t is not None else 1.0
        prev_t = t
        if u < T_MIB - DEAD_BAND_MIB / 2:
            run += dt
            best = max(best, run)
        else:
            run = 0.0
    returned = None
    if held:
        hmap = dict((round(t), h) for t, h in held)
        for i in range(1, len(series)):
            t, a, _ = series[i]
            ph, h = hmap.get(round(series[i - 1][0])), hmap.get(round(t))
            if ph is None or h is None or not (ph >= NOTHING_TO_RETURN_MIB and h < 1):
                continue
            a0 = series[i - 1][1]
            above = a0 - (U_MIB + 2 * T_MIB)
            if above < NOTHING_TO_RETURN_MIB:
                continue
            end = [x for x in series if t <= x[0] <= t + RETURN_WINDOW_S]
            if end and end[-1][0] - t >= 20:
                share = 100 * (a0 - end[-1][1]) / above
                returned = share if returned is None else min(returned, share)
    return {"oom_kills": oom, "peak_mib": peak, "lowest_unused_mib": lowest, "below_t_max_s": best,
            "returned_pct": returned}


def run_sim(tool, ini, tmp, policy, sets=()):
    """Runs memcoord-sim; returns ({guest: {"series", "held"}}, its JSON)."""
    out_csv = os.path.join(tmp, os.path.basename(ini) + ".csv")
    extra = ["--set", "Policy=" + policy] if policy else []
    for kv in sets:
        extra += ["--set", kv]
    r = subprocess.run([tool, "--json", "--csv", out_csv, ini] + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{ini}: memcoord-sim exit {r.returncode}: {r.stderr.strip()}")
    per = {}
    with open(out_csv) as f:
        for row in csv.DictReader(f):
            if row["running"] != "1":
                continue
            g = per.setdefault(row["guest"], {"series": [], "held": []})
            t = float(row["t"])
            # As the e2e sampler reads them: the guest's last stats (actual from the world at
            # the sample lags by libvirt's ~1 s; the peak and the end points do not care).
            g["series"].append((t, float(row["actual_mib"]), float(row["reported_unused_mib"])))
            # A workload the OOM killer ended is not a free: the real console goes silent then.
            g.setdefault("kills", 0)
            if int(row["oom_kills"]) > g["kills"]:
                g["kills"] = int(row["oom_kills"])
                g["held"] = [x for x in g["held"] if x[0] < t]
                g["dead"] = True
            if not g.get("dead"):
                g["held"].append((t, float(row["held_mib"])))
    out = json.loads(r.stdout)
    for g in out["guests"]:
        if g["name"] in per:
            per[g["name"]]["oom"] = g["oom_kills"]
    return per, out


def load_trace(traces, key):
    """A recorded real run: ({sim guest name: {"series", "held"}}, its JSON), on the axis of
    the scenario built from it (t = 0 at the first guest's `memdemand: ready`), or None."""
    base = os.path.join(traces, f"scenario-{key}")
    if not (os.path.exists(base + ".csv") and os.path.exists(base + ".json")):
        return None
    with open(base + ".json") as f:
        meta = json.load(f)
    shift = -min(g["ready_t"] for g in meta["guests"].values())
    per = {}
    with open(base + ".csv") as f:
        for row in csv.DictReader(f):
            name = row["guest"].removeprefix("e2e-")
            g = per.setdefault(name, {"series": [], "held": []})
            t = float(row["t"]) + shift
            g["series"].append((t, int(row["actual_kib"]) / MIB, int(row["unused_kib"]) / MIB))
            if row.get("held_mib", "") != "":
                g["held"].append((t, float(row["held_mib"])))
    for name, g in meta["guests"].items():
        if name.removeprefix("e2e-") in per:
            per[name.removeprefix("e2e-")]["oom"] = g.get("oom_kills", 0)
    return per, meta


def trace_invalid(meta, key):
    """Why a recorded run cannot stand for the real guests (the e2e checks it failed), or None."""
    for name, g in meta["guests"].items():
        steps = (g["schedule"] or "idle").split(",")
        t = g["ready_t"]
        for st in steps:
            if st.startswith("idle"):
                t += float(st.split(":")[1]) if ":" in st else float("inf")
                continue
            if t < meta["t_daemon"] + 3:
                return f"{name}'s workload started {meta['t_daemon'] - t:.0f} s before the daemon ticked"
            break
        if key in SCENARIOS and g.get("oom_kills", 0) > 0:
            return f"{name} was OOM-killed, which that scenario's checks fail"
    return None


def scenario_of_trace(meta, path):
    """The simulator's scenario for a recorded run: its schedules, boot spread, sizes, the
    daemon's start and settings, and the policy that ran."""
    t0 = min(g["ready_t"] for g in meta["guests"].values())
    st = meta["settings"]
    lines = ["# Written by calibrate.py from a real-guest trace.", "[Scenario]",
             f"Description=trace of e2e scenario {meta['scenario']}",
             f"DaemonStartSec={max(meta['t_daemon'] - t0, 0):.2f}",
             f"DurationSec={meta['t_end'] - t0:.0f}",
             "[Settings]", f"IntervalSec={st['interval_s']}", f"DomainThreshold={st['T_mib']}M",
             f"HostThreshold={st['H_mib']}M", f"ClaimFraction={st['claim_fraction']}",
             f"DeadBand={st['dead_band_mib']}M", f"DefaultMin={st['min_mib']}M"]
    if meta.get("budget_mib"):
        lines.append(f"HostBudget={meta['budget_mib']}M")
    if meta.get("policy"):
        lines.append(f"Policy={meta['policy']}")
    for name, g in sorted(meta["guests"].items()):
        lines += [f"[Guest {name.removeprefix('e2e-')}]", f"CurrentMiB={g['current_mib']}", f"MaxMiB={g['max_mib']}",
                  f"Autodeflate={'true' if g.get('autodeflate') else 'false'}", f"ReadySec={g['ready_t'] - t0:.2f}",
                  f"Schedule={g['schedule'] or 'idle'}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# A guest that deflates its own balloon (autodeflate) ends where its crawl at the OOM point
# stopped, which hangs on when it got there: two real runs of the jump peaked at 641 and 580 MiB.
AUTODEFLATE_PEAK = (40.0, 0.15)
AUTODEFLATE_GUESTS = {("jump", "jump")}


def within(name, sim, real, who=None):
    """True or False; None where the real run has no such figure (its trace ended first, or
    the guest never freed): nothing to compare, shown as n/a and not counted."""
    if real is None and sim is None:
        return True
    if real is None:
        return None
    if sim is None:
        return False
    a, rel = AUTODEFLATE_PEAK if name == "peak_mib" and who in AUTODEFLATE_GUESTS else TOLERANCE[name]
    return abs(sim - real) <= max(a, rel * abs(real))


def plot(path, key, sim, real, real_figs):
    """Real and simulated actual and unused per guest, side by side (gnuplot)."""
    with tempfile.TemporaryDirectory() as tmp:
        names = sorted(sim)
        lines = [f"set terminal pngcairo size 1100,{260 * len(names)} font ',9'", f"set output '{path}'",
                 f"set multiplot layout {len(names)},2 title 'e2e scenario {key}: real (left) and simulated "
                 "(right), actual and unused over time'", "set grid", "set key top left", "set yrange [0:1100]",
                 "set ylabel 'MiB'"]
        for n in names:
            for side, data in (("real", real.get(n) if real else None), ("sim", sim[n])):
                dat = os.path.join(tmp, f"{side}-{n}.dat")
                with open(dat, "w") as f:
                    for t, a, u in (data["series"] if data else []):
                        f.write(f"{t:.1f} {a:.1f} {u:.1f}\n")
                title = f"{n} ({'real' if side == 'real' else 'simulated'})"
                refs = ""
                if side == "real" and not data and n in real_figs:
                    pk, lo = real_figs[n][0], real_figs[n][1]
                    title = f"{n} (real: README figures only, no trace)"
                    refs = (f"{pk} w l dt 2 lc rgb '#1f77b4' t 'real peak actual', "
                            f"{lo} w l dt 2 lc rgb '#2ca02c' t 'real lowest unused', ")
                lines.append(f"set title '{title}' offset 0,-0.8")
                if data:
                    lines.append(f"plot {refs}'{dat}' u 1:2 w l lw 2 lc rgb '#1f77b4' t 'actual', "
                                 f"'' u 1:3 w l lc rgb '#2ca02c' t 'unused', {T_MIB} w l dt 3 lc rgb '#ff7f0e' t 'T'")
                else:
                    lines.append(f"set xrange [0:160]\nplot {refs}{T_MIB} w l dt 3 lc rgb '#ff7f0e' t 'T'\n"
                                 "set autoscale x")
        lines.append("unset multiplot")
        gp = os.path.join(tmp, "plot.gp")
        with open(gp, "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["gnuplot", gp], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sim", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--out", default=None, help="where calibration.md goes (default: print only)")
    ap.add_argument("--plots", default=None, help="where the PNGs go (default: none)")
    ap.add_argument("--traces", default=None, help="recorded real runs (default: ROOT/tests/e2e/traces)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to memcoord-sim (Model.KEY=V to try other model parameters)")
    ap.add_argument("--policy", default="seed",
                    help="the policy the real runs had (default seed: the README figures are daemon 82c4708's); "
                         "'' = the daemon's default")
    a = ap.parse_args()
    if a.traces is None:
        a.traces = os.path.join(a.root, "tests", "e2e", "traces")

    rows, bad, below, skipped = [], [], [], []
    sources = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in SCENARIOS + EXTRA_SCENARIOS:
            trace = load_trace(a.traces, key)
            why = trace_invalid(trace[1], key) if trace else None
            if why:
                skipped.append(f"{key}: trace not used ({why})")
                trace = None
            if trace:
                ini = os.path.join(tmp, f"trace-{key}.ini")
                scenario_of_trace(trace[1], ini)
                sources[key] = f"trace {os.path.relpath(os.path.join(a.traces, 'scenario-' + key), a.root)}"
            elif key in REAL_FIGURES:
                ini = os.path.join(a.root, "tests", "sim", f"e2e-{key}.ini")
                sources[key] = "README figures"
            else:
                continue
            # A trace says which policy ran; the README figures are seed's.
            sim, _ = run_sim(a.sim, ini, tmp, None if trace else a.policy, a.set)
            real_series = trace[0] if trace else None
            for n in sorted(sim):
                s = figures(sim[n]["series"], sim[n]["held"], sim[n].get("oom", 0))
                if real_series and n in real_series:
                    r = figures(real_series[n]["series"], real_series[n]["held"] or None, real_series[n].get("oom", 0))
                else:
                    rf = REAL_FIGURES[key][n]
                    r = {"oom_kills": 0, "peak_mib": rf[0], "lowest_unused_mib": rf[1], "below_t_max_s": rf[2],
                         "returned_pct": rf[3]}
                for fig in TOLERANCE:
                    ok = within(fig, s[fig], r[fig], (key, n))
                    rows.append((key, n, fig, r[fig], s[fig], ok))
                    if key in SCENARIOS and fig == "below_t_max_s":
                        below.append(ok)
                    elif key in SCENARIOS and fig in ASSERTED and ok is False:
                        bad.append(f"{key}/{n} {fig}: real {r[fig]}, simulated {s[fig]}")
            if a.plots:
                os.makedirs(a.plots, exist_ok=True)
                plot(os.path.join(a.plots, f"e2e-{key}.png"), key, sim, real_series, REAL_FIGURES.get(key, {}))

    def f(v):
        return "-" if v is None else f"{v:.0f}"

    def tol(k, v):
        if k == "oom_kills":
            return "oom_kills exactly"
        return f"{k} ±max({v[0]:g}, {100 * v[1]:g} %)" if v[1] else f"{k} ±{v[0]:g}"

    tols = ", ".join(tol(k, v) for k, v in TOLERANCE.items()) + (
        f"; peak_mib of the autodeflate guest ±max({AUTODEFLATE_PEAK[0]:g}, {100 * AUTODEFLATE_PEAK[1]:g} %)")
    md = ["| scen. | guest | figure | real | simulated | within |", "|---|---|---|---|---|---|"]
    for key, n, fig, r, s, ok in rows:
        md.append(f"| {key} | {n} | {fig} | {f(r)} | {f(s)} | {'n/a' if ok is None else 'yes' if ok else '**no**'} |")
    text = ("Real side: " + "; ".join(f"{k}: {v}" for k, v in sources.items()) + ".\n"
            + "".join(f"{x}.\n" for x in skipped) +
            f"Tolerances: {tols}.\n\n" + "\n".join(md) + "\n\n"
            f"{sum(1 for x in rows if x[5])} of {len(rows)} figures within tolerance; asserted (scenarios "
            f"{', '.join(SCENARIOS)}): {', '.join(ASSERTED)} for every guest ({len(bad)} out), below_t_max_s "
            f"for {sum(below)} of {len(below)} guests (at least {100 * BELOW_T_SHARE:.0f} % required).\n")
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "calibration.md"), "w") as fo:
            fo.write(text)
    if below and sum(below) < BELOW_T_SHARE * len(below):
        bad.append(f"below_t_max_s within tolerance for {sum(below)} of {len(below)} guests")
    if a.check and bad:
        print("out of tolerance:\n  " + "\n  ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
