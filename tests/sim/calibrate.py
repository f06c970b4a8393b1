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
    "peak_mib": (40.0, 0.05),       # the balloon's end point: what the policy granted
    "lowest_unused_mib": (25.0, 0), # how close to the OOM point (~50 MiB between T and it)
    "below_t_max_s": (12.0, 0),     # the ramp's time under T (the real ones ran 15-33 s)
    "returned_pct": (10.0, 0),      # memory back within 60 s
}

# tests/e2e/README.md, "Figures": `meson test --suite e2e` at daemon 82c4708 (seed policy).
# scenario -> sim guest name -> (peak MiB, lowest unused MiB, below T max s, returned %)
REAL_FIGURES = {
    "1": {"busy": (846, 74, 24, 100), "idle1": (511, 200, 0, None), "idle2": (511, 200, 0, None)},
    "2": {"a": (608, 78, 31, 99), "b": (607, 71, 33, 99), "c": (615, 71, 33, 99)},
    "3": {"long": (901, 76, 32, 100), "short": (596, 75, 15, 99), "idle": (511, 200, 0, None)},
    "jump": {"jump": (641, 47, 22, 100), "idle1": (511, 164, 0, None), "idle2": (511, 164, 0, None)},
}
SCENARIOS = ["1", "2", "3", "jump"]


def figures(series, held):
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
    return {"peak_mib": peak, "lowest_unused_mib": lowest, "below_t_max_s": best, "returned_pct": returned}


def run_sim(tool, ini, tmp, policy, sets=()):
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
            g["held"].append((t, float(row["held_mib"])))
    return per, json.loads(r.stdout)


def load_trace(root, key):
    """A recorded real run: {sim guest name: {"series", "held"}} aligned on the daemon's start
    (simulated at 5 s), or None."""
    base = os.path.join(root, "tests", "e2e", "traces", f"scenario-{key}")
    if not (os.path.exists(base + ".csv") and os.path.exists(base + ".json")):
        return None
    with open(base + ".json") as f:
        meta = json.load(f)
    shift = 5.0 - float(meta.get("t_daemon", 5.0))
    per = {}
    with open(base + ".csv") as f:
        for row in csv.DictReader(f):
            name = row["guest"].removeprefix("e2e-")
            g = per.setdefault(name, {"series": [], "held": []})
            t = float(row["t"]) + shift
            g["series"].append((t, int(row["actual_kib"]) / MIB, int(row["unused_kib"]) / MIB))
            if row.get("held_mib", "") != "":
                g["held"].append((t, float(row["held_mib"])))
    return per, meta


def within(name, sim, real):
    if real is None and sim is None:
        return True
    if real is None or sim is None:
        return False
    a, rel = TOLERANCE[name]
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
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to memcoord-sim (Model.KEY=V to try other model parameters)")
    ap.add_argument("--policy", default="seed",
                    help="the policy the real runs had (default seed: the README figures are daemon 82c4708's); "
                         "'' = the daemon's default")
    a = ap.parse_args()

    rows, bad = [], []
    sources = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in SCENARIOS:
            ini = os.path.join(a.root, "tests", "sim", f"e2e-{key}.ini")
            sim, _ = run_sim(a.sim, ini, tmp, a.policy, a.set)
            trace = load_trace(a.root, key)
            real_series = trace[0] if trace else None
            sources[key] = "trace tests/e2e/traces/scenario-%s" % key if trace else "README figures"
            for n in sorted(sim):
                s = figures(sim[n]["series"], sim[n]["held"])
                if real_series and n in real_series:
                    r = figures(real_series[n]["series"], real_series[n]["held"] or None)
                else:
                    rf = REAL_FIGURES[key][n]
                    r = {"peak_mib": rf[0], "lowest_unused_mib": rf[1], "below_t_max_s": rf[2],
                         "returned_pct": rf[3]}
                for fig in TOLERANCE:
                    ok = within(fig, s[fig], r[fig])
                    rows.append((key, n, fig, r[fig], s[fig], ok))
                    if not ok:
                        bad.append(f"{key}/{n} {fig}: real {r[fig]}, simulated {s[fig]}")
            if a.plots:
                os.makedirs(a.plots, exist_ok=True)
                plot(os.path.join(a.plots, f"e2e-{key}.png"), key, sim, real_series, REAL_FIGURES[key])

    def f(v):
        return "-" if v is None else f"{v:.0f}"

    tol = ", ".join(f"{k} ±max({v[0]:g}, {100 * v[1]:g} %)" if v[1] else f"{k} ±{v[0]:g}"
                    for k, v in TOLERANCE.items())
    md = ["| scen. | guest | figure | real | simulated | within |", "|---|---|---|---|---|---|"]
    for key, n, fig, r, s, ok in rows:
        md.append(f"| {key} | {n} | {fig} | {f(r)} | {f(s)} | {'yes' if ok else '**no**'} |")
    text = ("Real side: " + "; ".join(f"{k}: {v}" for k, v in sources.items()) + ".\n"
            f"Tolerances: {tol}.\n\n" + "\n".join(md) + "\n\n"
            f"{sum(1 for x in rows if x[5])} of {len(rows)} figures within tolerance.\n")
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "calibration.md"), "w") as fo:
            fo.write(text)
    if a.check and bad:
        print("out of tolerance:\n  " + "\n  ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
