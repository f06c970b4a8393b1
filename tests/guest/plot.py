#!/usr/bin/python3
"""Plot a sampler CSV with gnuplot (Debian's gnuplot-nox): actual and unused per
guest over time, optionally the host's free memory, with the workload phases
marked as vertical lines.

    from plot import plot
    plot("run.csv", "run.png", phases=[(20, "mc-1 ramp"), (60, "mc-1 free")])

phases: (t, label) or (t, label, guest) on the CSV's t axis; with a guest the
line takes that guest's colour. guests_phases() turns memdemand schedules into
such marks.

CLI:
    plot.py CSV PNG [--phase T:LABEL ...] [--title TEXT] [--host]
"""

import argparse
import os
import shutil
import subprocess
import sys
from typing import Dict, Iterable, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sampler import guests_in, load_csv, series  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
          "#17becf", "#7f7f7f", "#bcbd22"]


def _terminal() -> str:
    """pngcairo where gnuplot has it (antialiased), else the libgd png terminal."""
    try:
        p = subprocess.run(["gnuplot", "-e", "set terminal"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        if "pngcairo" in p.stdout:
            return "pngcairo"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "png"


def guests_phases(schedules: Dict[str, str], ready_t: Dict[str, float]) -> List[tuple]:
    """Phase marks from memdemand schedules: {guest: schedule} and {guest: t of
    the guest's `memdemand: ready` on the CSV's t axis} -> [(t, label, guest)]."""
    from guests import parse_schedule
    out = []
    for g, sched in schedules.items():
        if g not in ready_t or not sched:
            continue
        for start, kind, target, secs in parse_schedule(sched):
            label = f"{g} {kind}" + (f" {target}M" if kind in ("ramp", "to", "jump") else "")
            out.append((ready_t[g] + start, label, g))
    return out


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plot(csv_path: str, png_path: str, phases: Optional[Sequence[tuple]] = None,
         title: Optional[str] = None, guests: Optional[Iterable[str]] = None,
         host: bool = False, width: int = 1400, height: Optional[int] = None) -> str:
    """Write png_path; returns it. Raises RuntimeError if gnuplot fails."""
    if not shutil.which("gnuplot"):
        raise RuntimeError("gnuplot not installed (apt-get install gnuplot-nox)")
    rows = load_csv(csv_path)
    names = list(guests) if guests is not None else guests_in(rows)
    color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(names)}
    panels = 3 if host else 2
    height = height or (330 * panels + 60)
    term = _terminal()
    font = "font 'sans,10'" if term == "pngcairo" else ""

    g = [f"set terminal {term} size {width},{height} {font}",
         f"set output {_q(png_path)}",
         "set datafile separator ' '",
         "set grid ytics lc rgb '#dddddd'",
         "set key outside right top",
         "set lmargin 10", "set rmargin 24"]
    # Data blocks: one per guest and column, "t MiB".
    blocks = {}
    for gi, gname in enumerate(names):
        for col in ("actual_kib", "unused_kib"):
            b = f"$d{gi}_{col.split('_')[0]}"
            blocks[(gname, col)] = b
            g.append(f"{b} << EOD")
            g.extend(f"{t:.3f} {v / 1024:.1f}" for t, v in series(rows, gname, col))
            g.append("EOD")
    if host:
        g.append("$host << EOD")
        seen = set()
        for r in sorted(rows, key=lambda r: r["t"]):
            if r["ts"] in seen or r["host_free_kib"] is None:
                continue
            seen.add(r["ts"])
            g.append(f"{r['t']:.3f} {r['host_free_kib'] / 1024:.1f} "
                     f"{(r['host_avail_kib'] or 0) / 1024:.1f}")
        g.append("EOD")

    tmax = max(max((r["t"] for r in rows), default=1.0), 1.0)
    g.append(f"set xrange [0:{tmax:.1f}]")

    # Phase marks: arrows (lines) are per plot, so set them once for all panels.
    # (a mark outside the x range would be drawn in the margin: skip it)
    for i, ph in enumerate(p for p in (phases or []) if 0 <= p[0] <= tmax):
        t, label = ph[0], ph[1]
        c = color.get(ph[2], "#555555") if len(ph) > 2 else "#555555"
        g.append(f"set arrow {i + 1} from {t:.2f}, graph 0 to {t:.2f}, graph 1 nohead "
                 f"lc rgb '{c}' dt 2 lw 1")
        g.append(f"set label {i + 1} {_q(label)} at {t:.2f}, graph 0.98 right rotate by 90 "
                 f"tc rgb '{c}' front font ',8'")

    g.append(f"set multiplot layout {panels},1 title {_q(title or os.path.basename(csv_path))}")
    for col, ylabel in (("actual_kib", "actual (MiB)"), ("unused_kib", "unused (MiB)")):
        g.append(f"set ylabel {_q(ylabel)}")
        g.append("set xlabel 't (s)'")
        g.append("set yrange [0:*]")
        parts = [f"{blocks[(n, col)]} using 1:2 with lines lw 2 lc rgb '{color[n]}' title {_q(n)}"
                 for n in names]
        g.append("plot " + ", \\\n     ".join(parts) if parts else "plot 0 notitle")
    if host:
        g.append("set ylabel 'host (MiB)'")
        g.append("set key inside left bottom opaque")
        g.append("set yrange [*:*]")
        g.append("plot $host using 1:2 with lines lw 2 lc rgb '#333333' title 'host free', "
                 "$host using 1:3 with lines lw 1 dt 3 lc rgb '#333333' title 'host available'")
    g.append("unset multiplot")
    script = "\n".join(g) + "\n"
    p = subprocess.run(["gnuplot"], input=script, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    if p.returncode != 0 or not os.path.exists(png_path):
        raise RuntimeError(f"gnuplot failed: {p.stderr.strip()[-2000:]}")
    return png_path


def _cli(argv=None) -> int:
    ap = argparse.ArgumentParser(description="plot a sampler CSV to PNG")
    ap.add_argument("csv")
    ap.add_argument("png")
    ap.add_argument("--phase", action="append", default=[], metavar="T:LABEL[:GUEST]")
    ap.add_argument("--title")
    ap.add_argument("--host", action="store_true", help="add a panel with host free memory")
    a = ap.parse_args(argv)
    phases = []
    for p in a.phase:
        f = p.split(":", 2)
        phases.append((float(f[0]), *f[1:]))
    plot(a.csv, a.png, phases=phases, title=a.title, host=a.host)
    print(a.png)
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
