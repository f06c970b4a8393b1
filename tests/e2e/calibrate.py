#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Measure the tiny real guests the way a model of them needs: what the kernel uses, the OOM
point, balloon speed, stats lag and freezes, page cache under the balloon, allocation speed.

    calibrate.py --out DIR [--kit DIR] [--work DIR]        # root; ~3 minutes, no memcoordd
    calibrate.py --freeze tests/e2e/traces/*.csv           # frozen unused in the scenario traces
    calibrate.py --landing tests/e2e/traces/*.csv run/samples.csv ...  # use read while a grant lands
                                                           # (also memcoord-sim --csv files)

One guest (`cal-probe`: 512 of 1024 MiB, a 2 GiB sparse disk, stats every second, kernel
log level 7 so the OOM report with the zone watermarks reaches the console) runs a fixed
memdemand schedule while this script moves its balloon at fixed times and polls, ~10 times a
second, both `virsh domstats --balloon` (what the daemon reads) and QEMU's own balloon size
(`qemu-monitor-command --hmp 'info balloon'`), through one long-lived virsh. It writes
DIR/calibrate.csv (every poll), DIR/calibrate.json (the figures) and DIR/calibrate.md (the
table of tests/e2e/README.md, "The guests, as measured"), and prints the table.
"""

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib as E  # noqa: E402
from e2elib import G, log  # noqa: E402

NAME = "cal-probe"
MIB = 1024

# The guest's timeline (s from `memdemand: ready`) and the balloon moves of this script.
# The jump at t=68 lands in pages the host no longer backs (the 600 MiB freed at t=60 went back
# through free page reporting within ~4 s), as a consumer's growth after a grant does.
# The cache read (as fast as it can) gets 23 s before the balloon moves: on two busy cores it
# ran at 34-130 MiB/s.
SCHEDULE = ("idle:30,ramp:600:20,hold:10,free,idle:8,jump:650,hold:12,free,idle:3,"
            "cache:900,idle:41,uncache,idle:14,jump:380,hold:15")
SETMEM = [  # (t, MiB, why)
    (20, 400, "inflate 112 MiB, idle"),
    (25, 900, "deflate 500 MiB, idle"),
    (40, 1000, "deflate 100 MiB while the workload grows at 30 MiB/s"),
    (48, 900, "inflate 100 MiB while the workload grows"),
    (106, 400, "inflate 500 MiB of a guest full of page cache"),
    (116, 900, "deflate 500 MiB, cache kept"),
    (132, 400, "inflate 500 MiB, idle, before the OOM test (380 MiB held at once)"),
]
END_S = 160


class Shell:
    """One `virsh` reading commands on stdin: ~10 ms a command instead of ~150 ms a process."""

    def __init__(self, uri: str = E.URI):
        self.p = subprocess.Popen(["virsh", "-q", "-c", uri], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lock = threading.Lock()

    def run(self, cmd: str) -> str:
        with self.lock:
            self.p.stdin.write(cmd + "\necho @@end@@\n")
            self.p.stdin.flush()
            out = []
            for line in self.p.stdout:
                if line.strip().endswith("@@end@@"):
                    break
                out.append(line)
            return "".join(x for x in out if not x.startswith("virsh #"))

    def close(self) -> None:
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()


def poll(shell: Shell, t0: float, rows: list, stop: threading.Event) -> None:
    while not stop.is_set():
        t = time.time() - t0
        st = G.parse_domstats(shell.run(f"domstats --balloon {NAME}")).get(NAME, {})
        q = re.search(r"actual=(\d+)", shell.run(f"qemu-monitor-command {NAME} --hmp 'info balloon'"))
        rows.append({"t": round(t, 3), "qemu_actual_mib": int(q.group(1)) if q else None,
                     **{k: st.get(k) for k in ("current", "unused", "usable", "disk_caches", "available",
                                               "last-update")}})
        stop.wait(max(0.0, 0.1 - (time.time() - t0 - t)))


_HELD = re.compile(r"memdemand t=(\d+) held_mib=(\d+) phase=(\S+)(?: cache_mib=(\d+))?")


def analyse(rows, console: str, t_ready: float, moves) -> dict:
    """Figures from the polls (t on the script's axis, t_ready = the schedule's t = 0)."""
    ok = [r for r in rows if r["unused"] is not None and r["current"] is not None]
    f = {}
    # Stats period: wall time between successive changes of last-update.
    ch = [r["t"] for a, r in zip(ok, ok[1:]) if r["last-update"] != a["last-update"]]
    iv = [b - a for a, b in zip(ch, ch[1:])]
    f["stats_period_s"] = {"median": statistics.median(iv), "p5": sorted(iv)[len(iv) // 20],
                           "p95": sorted(iv)[len(iv) * 19 // 20], "max": max(iv), "n": len(iv)}
    # A new sample: a poll whose last-update differs from the previous poll's.
    samples = [r for a, r in zip(ok, ok[1:]) if r["last-update"] != a["last-update"]]

    idle = [s for s in samples if s["t"] < moves[0][3]]
    f["U_kib"] = statistics.median(s["current"] - s["unused"] for s in idle)
    f["usable_gap_idle_kib"] = statistics.median(s["unused"] - s["usable"] for s in idle)
    f["cache_idle_kib"] = statistics.median(s["disk_caches"] or 0 for s in idle)

    # What the kernel uses beyond the workload: (actual - unused - U) / held, from the console.
    held = []
    with open(console, errors="replace") as fh:
        for line in fh.read().replace("\r", "").splitlines():
            m = _HELD.match(line.strip())
            if m:
                held.append((t_ready + int(m.group(1)), int(m.group(2)), int(m.group(4) or 0)))

    hold = [s for s in samples if t_ready + 53 <= s["t"] <= t_ready + 59.5]
    use = statistics.median(s["current"] - s["unused"] for s in hold)
    f["use_at_600_held_kib"] = use
    f["growth_per_mib_held"] = (use - f["U_kib"] - 600 * MIB) / (600 * MIB)

    # Allocation speed: jump:650 from 0 at t=68, MiB held per second on the console.
    jump = [(t, h) for t, h, _ in held if t_ready + 68 <= t <= t_ready + 80]
    steps = [b[1] - a[1] for a, b in zip(jump, jump[1:]) if b[1] > a[1]]

    # (the first and last second are partial)
    f["alloc_mib_s"] = {"median": statistics.median(steps[1:-1] or steps), "max": max(steps), "steps": steps}
    # Page-cache read speed: cache:900 at t=83 (as fast as it can).
    rd = [(t, c) for t, _, c in held if t_ready + 83 <= t <= t_ready + 106]
    rs = [b[1] - a[1] for a, b in zip(rd, rd[1:]) if b[1] > a[1]]
    f["cache_read_mib_s"] = {"median": statistics.median(rs) if rs else None, "steps": rs}
    f["cache_full"] = {"unused_kib": statistics.median(s["unused"] for s in samples
                                                         if t_ready + 100 <= s["t"] <= t_ready + 105.5),
                       "usable_kib": statistics.median(s["usable"] for s in samples
                                                         if t_ready + 100 <= s["t"] <= t_ready + 105.5),
                       "disk_caches_kib": statistics.median(s["disk_caches"] for s in samples
                                                              if t_ready + 100 <= s["t"] <= t_ready + 105.5)}

    # Each balloon move: QEMU's size and balloon.current over time; the guest's figures.
    f["moves"] = []
    for i, (t_set, mib, why, t_call) in enumerate(moves):
        t_next = moves[i + 1][3] if i + 1 < len(moves) else t_call + 30
        after = [r for r in ok if t_call <= r["t"] < t_next]
        before = [r for r in ok if r["t"] < t_call][-1]
        start_q = before["qemu_actual_mib"]
        q_first = next((r["t"] for r in after if r["qemu_actual_mib"] != start_q), None)
        q_done = next((r["t"] for r in after if r["qemu_actual_mib"] is not None
                       and abs(r["qemu_actual_mib"] - mib) <= 1), None)
        c_done = next((r["t"] for r in after if abs(r["current"] - mib * MIB) <= 2 * MIB), None)
        moved = abs(mib - start_q)
        # The guest's figures: how long after QEMU's balloon stopped moving does each reported
        # figure change, and how many fresh samples kept it as it was.
        figs = {}
        ref_t = q_done if q_done is not None else t_call
        new = [s for s in samples if t_call < s["t"] < t_next]
        for k in ("unused", "usable", "disk_caches", "available"):
            first_val = next((s[k] for s in reversed([s for s in samples if s["t"] <= t_call])), None)
            changed = next((s for s in new if s[k] != first_val), None)
            same = sum(1 for s in new if changed is None or s["t"] < changed["t"])
            figs[k] = {"changed_after_call_s": None if changed is None else round(changed["t"] - t_call, 2),
                       "after_landing_s": None if changed is None else round(changed["t"] - ref_t, 2),
                       "fresh_samples_unchanged": same}
        cache_b = before["disk_caches"]
        end = [s for s in samples if s["t"] < min(t_next, (q_done or t_call) + 5)]
        f["moves"].append({
            "t": t_set, "to_mib": mib, "why": why, "from_mib": start_q, "moved_mib": moved,
            "qemu_starts_s": None if q_first is None else round(q_first - t_call, 2),
            "qemu_done_s": None if q_done is None else round(q_done - t_call, 2),
            "current_done_s": None if c_done is None else round(c_done - t_call, 2),
            "current_lag_s": None if (c_done is None or q_done is None) else round(c_done - q_done, 2),
            "mib_per_s": None if not q_done or q_first is None else round(moved / max(q_done - t_call, 0.1), 0),
            "figures": figs,
            "unused_before_kib": before["unused"], "unused_after_kib": end[-1]["unused"] if end else None,
            "usable_before_kib": before["usable"], "usable_after_kib": end[-1]["usable"] if end else None,
            "cache_before_kib": cache_b, "cache_after_kib": end[-1]["disk_caches"] if end else None,
        })

    # The OOM test: jump:380 at t=138 with the balloon at 400 MiB.
    with open(console, errors="replace") as fh:
        text = fh.read().replace("\r", "")
    m = re.search(r"Node 0 DMA32 free:(\d+)kB boost:\d+kB min:(\d+)kB low:(\d+)kB high:(\d+)kB", text)
    dma = re.search(r"Node 0 DMA free:(\d+)kB boost:\d+kB min:(\d+)kB low:(\d+)kB high:(\d+)kB", text)
    killed = re.search(r"Out of memory: Killed process \d+ \(memdemand\) total-vm:\d+kB, anon-rss:(\d+)kB", text)
    last = [s for s in samples if t_ready + 132 <= s["t"] <= t_ready + 153]
    f["oom"] = {
        "killed": bool(killed),
        "anon_rss_kib": int(killed.group(1)) if killed else None,
        "dma32_free_min_low_high_kib": [int(x) for x in m.groups()] if m else None,
        "dma_free_min_low_high_kib": [int(x) for x in dma.groups()] if dma else None,
        "lowest_unused_kib_sampled": min((s["unused"] for s in last), default=None),
        "min_free_kbytes": None,
    }
    mf = re.search(r"calibrate: min_free_kbytes=(\d+)", text)
    if mf:
        f["oom"]["min_free_kbytes"] = int(mf.group(1))
    return f


def table(f: dict) -> str:
    k = lambda v: "-" if v is None else f"{v / MIB:.0f}"  # noqa: E731
    n = lambda v, unit="": "-" if v is None else f"{v:g}{unit}"  # noqa: E731
    out = ["| fact | measured |", "|---|---|"]
    out.append(f"| U, kernel and /init at rest (actual − unused, idle) | {k(f['U_kib'])} MiB |")
    out.append(f"| kernel use with 600 MiB held (actual − unused) | {k(f['use_at_600_held_kib'])} MiB: "
               f"+{100 * f['growth_per_mib_held']:.1f} % of what is held |")
    out.append(f"| MemFree − MemAvailable (unused − usable), idle | {k(f['usable_gap_idle_kib'])} MiB |")
    o = f["oom"]
    if o["dma32_free_min_low_high_kib"]:
        fr, mn, lo, hi = o["dma32_free_min_low_high_kib"]
        out.append(f"| OOM kill: DMA32 zone free / min / low / high at the kill (console) | "
                   f"{fr // 1024} / {mn // 1024} / {lo // 1024} / {hi // 1024} MiB |")
    out.append(f"| OOM kill: lowest unused sampled before it (1 Hz) | {k(o['lowest_unused_kib_sampled'])} MiB |")
    for mv in f["moves"]:
        fig = mv["figures"]
        done = (f"done {n(mv['qemu_done_s'], ' s')} (~{n(mv['mib_per_s'], ' MiB/s')})" if mv["qemu_done_s"]
                else f"not done before the next move ({n(mv['moved_mib'])} MiB to go at the start)")
        cache = (f", disk_caches {n(fig['disk_caches']['changed_after_call_s'], ' s')}"
                 if (mv["cache_before_kib"] or 0) > 50 * MIB else "")
        out.append(f"| setmem {mv['from_mib']} → {mv['to_mib']} MiB ({mv['why']}) | QEMU's balloon starts "
                   f"{n(mv['qemu_starts_s'], ' s')}, {done}; balloon.current there "
                   f"{n(mv['current_lag_s'], ' s')} after QEMU; first fresh sample that changed: unused "
                   f"{n(fig['unused']['changed_after_call_s'], ' s')} after the call "
                   f"({fig['unused']['fresh_samples_unchanged']} fresh samples unchanged before), usable "
                   f"{n(fig['usable']['changed_after_call_s'], ' s')}{cache}; before → 5 s after QEMU is done: "
                   f"unused {k(mv['unused_before_kib'])} → {k(mv['unused_after_kib'])}, usable "
                   f"{k(mv['usable_before_kib'])} → {k(mv['usable_after_kib'])}, disk_caches "
                   f"{k(mv['cache_before_kib'])} → {k(mv['cache_after_kib'])} MiB |")
    a = f["alloc_mib_s"]
    out.append(f"| memdemand allocation speed under TCG (jump:650 from 0) | {a['median']} MiB/s median, "
               f"{a['max']} max (per second: {a['steps']}) |")
    c = f["cache_read_mib_s"]
    out.append(f"| page-cache read speed (cache:900 from the sparse image) | {c['median']} MiB/s "
               f"(per second: {c['steps']}) |")
    cf = f["cache_full"]
    out.append(f"| guest of 900 MiB full of page cache: unused / usable / disk_caches | "
               f"{k(cf['unused_kib'])} / {k(cf['usable_kib'])} / {k(cf['disk_caches_kib'])} MiB |")
    if f.get("loadavg"):
        out.append(f"| host load average (1 min) at the start / end | {f['loadavg'][0]:.1f} / {f['loadavg'][1]:.1f} "
                   f"on {os.cpu_count()} cores |")
    p = f["stats_period_s"]
    out.append(f"| stats period (wall time between new last-update values, {p['n']} intervals) | "
               f"median {p['median']:.2f} s, p5 {p['p5']:.2f}, p95 {p['p95']:.2f}, max {p['max']:.2f} s |")
    return "\n".join(out) + "\n"


def freeze(paths) -> str:
    """In scenario traces: after each balloon decision the daemon made, how many fresh guest
    samples (last_update advanced) kept `unused` exactly as it was while the guest's workload
    changed what it held (so unused should have moved). Also the same count outside the 6 s
    after any decision, for comparison."""
    import collections
    after, other = collections.Counter(), collections.Counter()
    for p in paths:
        with open(os.path.splitext(p)[0] + ".json") as fh:
            meta = json.load(fh)
        rows = list(csv.DictReader(open(p)))
        by = collections.defaultdict(list)
        for r in rows:
            if r["unused_kib"] and r["last_update"]:
                by[r["guest"]].append((float(r["t"]), int(r["unused_kib"]), int(r["last_update"]),
                                       int(r["held_mib"] or 0)))
        dec = collections.defaultdict(list)
        for t, g, a, b, why in meta["decisions"]:
            dec[g].append(t)
        for g, ss in by.items():
            run = 0
            for (t0, u0, l0, h0), (t1, u1, l1, h1) in zip(ss, ss[1:]):
                if l1 == l0:
                    continue
                # (at the kernel's watermarks unused is pinned, not frozen: left out)
                frozen = u1 == u0 and abs(h1 - h0) >= 5 and u0 > 80 * MIB
                near = any(0 <= t1 - td <= 6 for td in dec[g])
                if frozen:
                    run += 1
                    continue
                if run:
                    (after if near else other)[run] += 1
                run = 0
    out = ["| fresh samples in a row with unused unchanged (above 80 MiB) while the workload moved ≥ 5 MiB | runs within 6 s of a "
           "decision | runs elsewhere |", "|---|---|---|"]
    for k in sorted(set(after) | set(other)):
        out.append(f"| {k} | {after[k]} | {other[k]} |")
    return "\n".join(out) + "\n"


def landing(paths) -> str:
    """In scenario traces (or runs' samples.csv, or memcoord-sim --csv): per one-second guest
    sample (last_update one second after the previous one) while the workload grew, the use it shows (MemTotal less
    MemFree) against what the workload really took (held_mib, from its console, plus the
    kernel's ~3 % of it), split by whether the guest's MemTotal grew in that sample (a grant
    landing) or stood still; and while the workload is idle and a claim lands. Without held_mib
    (a run's samples.csv), scenario 2's schedule stands for it (~9.6 MiB/s from t = 34 to 68 s,
    idle from 8 to 28 and 102 to 138 s). Then the daemon's rate estimate, replayed."""
    import collections
    groups = collections.defaultdict(list)
    for p in paths:
        rows = list(csv.DictReader(open(p)))
        by = collections.defaultdict(list)
        for r in rows:
            if "reported_memtotal_mib" in r:
                # memcoord-sim --csv: one row a second; the guest's sample is what it reported
                by[r["guest"]].append((float(r["t"]), int(float(r["t"])), float(r["reported_unused_mib"]),
                                       float(r["reported_memtotal_mib"]), float(r["held_mib"])))
            elif r["unused_kib"] and r["last_update"] and r["available_kib"]:
                held = float(r["held_mib"]) if r.get("held_mib") else None
                by[r["guest"]].append((float(r["t"]), int(r["last_update"]), int(r["unused_kib"]) / MIB,
                                       int(r["available_kib"]) / MIB, held))
        skipped = guests_measured_otherwise(p)
        for g, ss in by.items():
            fresh = [s for i, s in enumerate(ss) if i == 0 or s[1] != ss[i - 1][1]]
            if g not in skipped:
                for rule in (False, True):
                    groups[("rate", rule)] += replay_rate(fresh, rule)
            for (t0, l0, u0, a0, h0), (t1, l1, u1, a1, h1) in zip(fresh, fresh[1:]):
                if l1 - l0 != 1 or (u1 == u0 and a1 == a0):
                    continue  # a gap, or a frozen sample (calibrate.py --freeze)
                if h0 is not None and h1 is not None:
                    took = (h1 - h0) * 1.03
                elif 34 < t1 < 68:
                    took = 9.6
                elif 8 < t1 < 28 or 102 < t1 < 138:
                    took = 0.0  # scenario 2's idle windows
                else:
                    continue
                if abs(took) < 1 and a1 < a0 - 1:
                    kind = "claim"
                elif took < 3 or a1 < a0 - 1:
                    continue  # not growing, or a claim landing while it grows
                else:
                    kind = "grew" if a1 >= a0 + 1 else "still"
                groups[kind].append((a1 - a0) - (u1 - u0) - took)

    def q(v, f):
        v = sorted(v)
        return v[min(len(v) - 1, int(f * len(v)))]
    out = ["| one-second samples | samples | use shown less use taken, median MiB | p90 | max |",
           "|---|---|---|---|---|"]
    for kind, label in (("still", "workload growing, MemTotal still"),
                        ("grew", "workload growing, MemTotal grew (a grant landing)"),
                        ("claim", "workload idle, MemTotal shrank (a claim landing)")):
        v = groups[kind]
        if v:
            out.append(f"| {label} | {len(v)} | {statistics.median(v):+.0f} | {q(v, 0.9):+.0f} | {max(v):+.0f} |")
    out += ["", "| the daemon's rate estimate while the workload grows, less its rate | samples | median MiB/s | "
            "p90 | p99 | max |", "|---|---|---|---|---|---|"]
    for rule, label in ((False, "every sample folded in"), (True, "a grant landing gives no rate (guest.c)")):
        v = groups[("rate", rule)]
        if v:
            out.append(f"| {label} | {len(v)} | {statistics.median(v):+.1f} | {q(v, 0.9):+.1f} | {q(v, 0.99):+.1f} "
                       f"| {max(v):+.1f} |")
    return "\n".join(out) + "\n"


def guests_measured_otherwise(path) -> set:
    """A trace's guests with a disk or autodeflate: their use is measured otherwise (caches;
    actual), so their rate is not replayed; none for a file without a trace's JSON."""
    meta = os.path.splitext(path)[0] + ".json"
    if not os.path.exists(meta):
        return set()
    with open(meta) as fh:
        guests = json.load(fh)["guests"]
    return {name for name, g in guests.items() if g.get("disk_mib") or g.get("autodeflate")}


# guest.c's rate estimate, replayed: RATE_ALPHA_UP, RATE_ALPHA_DOWN, FROZEN_MAX_SEC, the dead band
ALPHA_UP, ALPHA_DOWN, FROZEN_MAX_S, BAND_MIB = 0.8, 0.35, 6, 1


def replay_rate(fresh, landing_rule):
    """The rate the daemon reads from a guest's fresh samples (t, stamp, unused, MemTotal, held),
    less the workload's own (over the last 3 s of held memory, or 9.6 MiB/s in scenario 2's ramps
    where held is not recorded), at every sample while it grows by 3 MiB/s or more."""
    out, rate, base, last = [], 0.0, None, None
    for i, (t, stamp, unused, size, held) in enumerate(fresh):
        used = size - unused
        if last is None:
            base, last = (stamp, used), (stamp, unused, size)
            continue
        if unused == last[1] and size != last[2] and stamp - last[0] <= FROZEN_MAX_S:
            continue  # frozen: the balloon moved, unused did not
        landing = landing_rule and size >= last[2] + BAND_MIB and stamp - base[0] <= FROZEN_MAX_S
        if not landing and stamp > base[0]:
            inst = (used - base[1]) / (stamp - base[0])
            a = ALPHA_UP if inst > rate else ALPHA_DOWN
            rate = a * inst + (1 - a) * rate
            base = (stamp, used)
        last = (stamp, unused, size)
        back = [s for s in fresh[:i] if t - 3.5 <= s[0] <= t - 2.5 and s[4] is not None]
        if held is not None and back:
            took = (held - back[-1][4]) * 1.03 / (t - back[-1][0])
        elif held is None and 34 < t < 68:
            took = 9.6
        else:
            continue
        if took >= 3:
            out.append(rate - took)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--kit", default=os.environ.get("MC_E2E_KIT", E.DEFAULT_KIT))
    ap.add_argument("--work", default=os.environ.get("MC_E2E_WORK", E.DEFAULT_WORK))
    ap.add_argument("--reanalyze", action="store_true")
    ap.add_argument("--freeze", nargs="+", metavar="TRACE.csv", help="analyse scenario traces instead")
    ap.add_argument("--landing", nargs="+", metavar="TRACE.csv",
                    help="the use guests show while a grant lands, in scenario traces or runs' samples.csv")
    a = ap.parse_args(argv)
    if a.freeze:
        print(freeze(a.freeze))
        return 0
    if a.landing:
        print(landing(a.landing))
        return 0
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    console = os.path.join(out, "console", f"{NAME}.log")
    if a.reanalyze:
        with open(os.path.join(out, "calibrate-run.json")) as fh:
            run = json.load(fh)
        rows = run["rows"]
    else:
        if os.geteuid() != 0:
            print("SKIP: needs root", flush=True)
            return E.SKIP
        E.build_kit(a.kit)
        host = E.Host(os.path.join(out, "work"), a.kit, ".", os.path.join(a.work, "libvirt-host"), prefix="cal-")
        shell = None
        try:
            host.start_libvirt()
            E.wait_for_quiet_host("cal-")
            g = G.Guests(a.kit, os.path.join(out, "console"), prefix="cal-")
            host.guests = g
            # min_free_kbytes is not in the OOM report: /init cannot print it, the cmdline can't
            # either; the zone's min watermark (in the report) is what it sets.
            g.add(NAME, schedule=SCHEDULE, disk_mib=2048,
                  cmdline=G.DEFAULT_CMDLINE.replace("loglevel=4", "loglevel=7"))
            g.start()
            g.wait_ready()
            t_ready = g.guests[NAME].ready_line_at
            load0 = os.getloadavg()[0]
            shell = Shell()
            rows, stop = [], threading.Event()
            t0 = t_ready
            th = threading.Thread(target=poll, args=(shell, t0, rows, stop), daemon=True)
            th.start()
            moves = []
            for t_set, mib, why in SETMEM:
                time.sleep(max(0.0, t0 + t_set - time.time()))
                t_call = time.time() - t0
                shell.run(f"setmem {NAME} {mib}M --live")
                moves.append((t_set, mib, why, t_call))
                log(f"t={t_call:.1f}: setmem {mib} MiB ({why})")
            time.sleep(max(0.0, t0 + END_S - time.time()))
            stop.set()
            th.join(timeout=10)
            run = {"rows": rows, "moves": moves, "t_ready": 0.0, "loadavg": [load0, os.getloadavg()[0]]}
            with open(os.path.join(out, "calibrate-run.json"), "w") as fh:
                json.dump(run, fh)
        finally:
            if shell:
                shell.close()
            host.teardown()
    with open(os.path.join(out, "calibrate.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(run["rows"][0]))
        w.writeheader()
        w.writerows(run["rows"])
    f = analyse(run["rows"], console, run["t_ready"], [tuple(m) for m in run["moves"]])
    f["loadavg"] = run.get("loadavg")
    E.save_json(os.path.join(out, "calibrate.json"), f)
    text = table(f)
    with open(os.path.join(out, "calibrate.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
