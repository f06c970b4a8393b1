#!/usr/bin/python3
"""Record balloon stats of test guests once per second, and measure outcomes.

Recording:

    from sampler import Sampler
    with Sampler("run.csv", prefix="mc-") as s:   # a background thread
        ...                                       # s.t0: epoch of t=0
    rows = load_csv("run.csv")

The CSV has one row per guest per sample (long form), sizes in KiB:

    ts          epoch seconds of the sample
    t           seconds since the sampler started (all metrics use this)
    guest       domain name
    actual_kib  balloon.current: the balloon's actual size (what the guest has)
    unused_kib  balloon.unused    (guest MemFree)
    available_kib balloon.available (guest MemTotal)
    usable_kib  balloon.usable    (guest MemAvailable)
    disk_caches_kib balloon.disk_caches (guest Buffers + Cached + SwapCached)
    last_update balloon.last-update (epoch s of the guest's last stats sample)
    rss_kib     balloon.rss       (host RSS of the guest's QEMU)
    host_free_kib  host MemFree   (what virNodeGetMemoryStats calls "free")
    host_avail_kib host MemAvailable
A stat the guest does not report yet is an empty cell.

Outcome metrics (functions below): oom_kills, recovery_time, lowest_headroom,
largest_release_share, returned_within, reversals. `sampler.py metrics` prints
them as JSON.

CLI:
    sampler.py record --out CSV [--prefix mc-] [--duration S] [--interval 1]
    sampler.py metrics CSV [--console-dir DIR] [--threshold-mib 100]
                       [--budget-mib N] [--host-floor-mib N]
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from guests import DEFAULT_PREFIX, DEFAULT_URI, GuestError, balloon_stats  # noqa: E402

FIELDS = ["ts", "t", "guest", "actual_kib", "unused_kib", "available_kib", "usable_kib",
          "last_update", "rss_kib", "host_free_kib", "host_avail_kib", "disk_caches_kib"]
_STAT_OF = {"actual_kib": "current", "unused_kib": "unused", "available_kib": "available",
            "usable_kib": "usable", "last_update": "last-update", "rss_kib": "rss",
            "disk_caches_kib": "disk_caches"}


def host_meminfo() -> Dict[str, int]:
    """MemFree and MemAvailable of the host, KiB."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("MemFree", "MemAvailable", "MemTotal"):
                out[k] = int(v.split()[0])
    return out


class Sampler:
    """Append one row per guest to a CSV every `interval` seconds, in a thread.

    Guests: the given names, or every running domain whose name has `prefix`
    (so guests that come and go are followed). Ticks are laid on a fixed grid
    (t0 + k * interval), so a slow virsh call does not make the series drift.
    """

    def __init__(self, csv_path: str, uri: str = DEFAULT_URI, prefix: str = DEFAULT_PREFIX,
                 names: Optional[List[str]] = None, interval: float = 1.0):
        self.csv_path = csv_path
        self.uri = uri
        self.prefix = prefix
        self.names = names
        self.interval = interval
        self.t0: Optional[float] = None
        self.samples = 0
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._file = None
        self._writer = None

    def sample_once(self) -> int:
        """Take one sample now; returns the number of rows written."""
        ts = time.time()
        if self.t0 is None:
            self.t0 = ts
        try:
            if self.names:
                # Only the listed ones still running: a destroyed guest is not an error.
                stats = balloon_stats(self.uri, prefix=None)
                stats = {n: stats[n] for n in self.names if n in stats}
            else:
                stats = balloon_stats(self.uri, prefix=self.prefix)
        except GuestError as e:
            self.errors.append(f"t={ts - self.t0:.1f}: {e}")
            return 0
        host = host_meminfo()
        n = 0
        for name in sorted(stats):
            st = stats[name]
            row = {"ts": f"{ts:.3f}", "t": f"{ts - self.t0:.3f}", "guest": name,
                   "host_free_kib": host.get("MemFree", ""),
                   "host_avail_kib": host.get("MemAvailable", "")}
            for col, key in _STAT_OF.items():
                row[col] = st.get(key, "")
            self._writer.writerow(row)
            n += 1
        self._file.flush()
        self.samples += 1
        return n

    def _open(self) -> None:
        d = os.path.dirname(os.path.abspath(self.csv_path))
        os.makedirs(d, exist_ok=True)
        self._file = open(self.csv_path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=FIELDS)
        self._writer.writeheader()

    def _run(self) -> None:
        k = 0
        start = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            k += 1
            # Next grid point; skip the ones a slow call made us miss.
            delay = start + k * self.interval - time.monotonic()
            if delay < 0:
                k += int(-delay // self.interval) + 1
                delay = start + k * self.interval - time.monotonic()
            self._stop.wait(max(0.0, delay))

    def start(self) -> "Sampler":
        self._open()
        self.t0 = time.time()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
            self._thread = None
        if self._file:
            self._file.close()
            self._file = None

    def now(self) -> float:
        """Current time on the CSV's t axis."""
        return time.time() - (self.t0 if self.t0 is not None else time.time())

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


# ---------------------------------------------------------------------------
# Loading

def _num(v: str):
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        return float(v)


def load_csv(path: str) -> List[Dict]:
    """Rows of a sampler CSV with numbers converted (empty cells -> None)."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: (v if k == "guest" else _num(v)) for k, v in r.items()})
    return rows


def guests_in(rows: List[Dict]) -> List[str]:
    return sorted({r["guest"] for r in rows})


def series(rows: List[Dict], guest: str, col: str) -> List[tuple]:
    """[(t, value)] of one guest, samples with a value only, in time order."""
    return sorted((r["t"], r[col]) for r in rows if r["guest"] == guest and r[col] is not None)


def _ticks(rows: List[Dict]) -> "OrderedDict[float, List[Dict]]":
    """Rows grouped by sample (same ts), in time order."""
    out: "OrderedDict[float, List[Dict]]" = OrderedDict()
    for r in sorted(rows, key=lambda r: r["t"]):
        out.setdefault(r["ts"], []).append(r)
    return out


# ---------------------------------------------------------------------------
# Metrics

_OOM_KERNEL = re.compile(r"Out of memory|Killed process")
_OOM_MEMDEMAND = re.compile(r"memdemand: killed by signal (\d+)")


def oom_kills(consoles) -> Dict[str, Dict[str, int]]:
    """OOM kills per guest from console logs.

    consoles: {guest: path}, a list of paths (guest = file name without .log),
    or a directory holding NAME.log files. For each guest:
      kernel            console lines with "Out of memory" or "Killed process"
                        (one line per kill at loglevel 4: "Out of memory: Killed
                        process N (memdemand) ...")
      memdemand_killed  "memdemand: killed by signal N" lines from the guest's /init
      kills             max of the two: the number of kills seen
    """
    if isinstance(consoles, str):
        consoles = sorted(glob.glob(os.path.join(consoles, "*.log")))
    if not isinstance(consoles, dict):
        consoles = {os.path.basename(p)[:-4] if p.endswith(".log") else os.path.basename(p): p
                    for p in consoles}
    out = {}
    for guest, path in sorted(consoles.items()):
        kernel = killed = 0
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            text = ""
        for line in text.replace("\r", "").splitlines():
            if _OOM_KERNEL.search(line):
                kernel += 1
            if _OOM_MEMDEMAND.search(line):
                killed += 1
        out[guest] = {"kernel": kernel, "memdemand_killed": killed, "kills": max(kernel, killed)}
    return out


def recovery_time(rows: List[Dict], guest: str, threshold_kib: float) -> Dict:
    """Episodes of unused < threshold: from the first sample below to the first
    sample back at or above it. Returns {"max_s", "episodes": [{start, end,
    duration, open}]}; an episode still open at the end of the data lasts until
    the last sample and counts in max_s (open=True)."""
    s = series(rows, guest, "unused_kib")
    episodes = []
    start = None
    for t, v in s:
        if v < threshold_kib and start is None:
            start = t
        elif v >= threshold_kib and start is not None:
            episodes.append({"start": start, "end": t, "duration": t - start, "open": False})
            start = None
    if start is not None and s:
        episodes.append({"start": start, "end": s[-1][0], "duration": s[-1][0] - start,
                         "open": True})
    return {"max_s": max((e["duration"] for e in episodes), default=0.0),
            "episodes": episodes}


def lowest_headroom(rows: List[Dict], budget_kib: Optional[float] = None,
                    host_floor_kib: Optional[float] = None,
                    guests: Optional[Iterable[str]] = None) -> Dict:
    """Lowest headroom over the run.

    budget:  budget_kib - sum of actual over the guests, per sample
    host:    host_free_kib - host_floor_kib, per sample
    Returns {"budget_kib", "budget_t", "host_kib", "host_t"} (None where not asked).
    """
    want = set(guests) if guests is not None else None
    res = {"budget_kib": None, "budget_t": None, "host_kib": None, "host_t": None}
    for _, tick in _ticks(rows).items():
        sel = [r for r in tick if want is None or r["guest"] in want]
        if not sel:
            continue
        t = sel[0]["t"]
        if budget_kib is not None:
            h = budget_kib - sum(r["actual_kib"] or 0 for r in sel)
            if res["budget_kib"] is None or h < res["budget_kib"]:
                res["budget_kib"], res["budget_t"] = h, t
        if host_floor_kib is not None and sel[0]["host_free_kib"] is not None:
            h = sel[0]["host_free_kib"] - host_floor_kib
            if res["host_kib"] is None or h < res["host_kib"]:
                res["host_kib"], res["host_t"] = h, t
    return res


def largest_release_share(rows: List[Dict], guest: str) -> Dict:
    """The largest single drop of actual between two consecutive samples, as a
    share of the guest's unused at the earlier sample.
    Returns {"share", "t", "decrease_kib", "unused_before_kib"}; share 0.0 when
    actual never fell, inf when it fell while unused was 0."""
    best = {"share": 0.0, "t": None, "decrease_kib": 0, "unused_before_kib": None}
    prev = None
    for r in sorted((r for r in rows if r["guest"] == guest), key=lambda r: r["t"]):
        if r["actual_kib"] is None:
            continue
        if prev is not None:
            dec = prev["actual_kib"] - r["actual_kib"]
            unused = prev["unused_kib"]
            if dec > 0 and unused is not None:
                share = dec / unused if unused > 0 else math.inf
                if share > best["share"]:
                    best = {"share": share, "t": r["t"], "decrease_kib": dec,
                            "unused_before_kib": unused}
        prev = r
    return best


def _value_at(s: List[tuple], t: float):
    """Last value at or before t (the first one if t is before the series)."""
    v = None
    for tt, vv in s:
        if tt <= t:
            v = vv
        else:
            break
    if v is None and s:
        v = s[0][1]
    return v


def returned_within(rows: List[Dict], t: float, seconds: float,
                    guests: Optional[Iterable[str]] = None) -> Dict:
    """Memory the guests gave back (actual fell) within `seconds` after time t.

    Per guest: net = actual at t - actual at t+seconds; peak = actual at t -
    lowest actual in (t, t+seconds]. Positive = returned. Plus the totals and the
    host's MemFree change over the same window.
    Returns {"per_guest": {g: {"net_kib", "peak_kib"}}, "net_kib", "peak_kib",
    "host_free_delta_kib"}."""
    names = list(guests) if guests is not None else guests_in(rows)
    per = {}
    for g in names:
        s = series(rows, g, "actual_kib")
        if not s:
            continue
        before = _value_at(s, t)
        window = [v for tt, v in s if t < tt <= t + seconds]
        after = window[-1] if window else before
        lowest = min(window) if window else before
        per[g] = {"net_kib": before - after, "peak_kib": before - lowest}
    host = sorted({(r["t"], r["host_free_kib"]) for r in rows if r["host_free_kib"] is not None})
    hd = None
    if host:
        hw = [v for tt, v in host if t < tt <= t + seconds]
        hd = (hw[-1] if hw else _value_at(host, t)) - _value_at(host, t)
    return {"per_guest": per, "net_kib": sum(p["net_kib"] for p in per.values()),
            "peak_kib": sum(p["peak_kib"] for p in per.values()), "host_free_delta_kib": hd}


def reversals(rows: List[Dict], guest: str, min_change_kib: float = 1024) -> int:
    """Direction reversals of actual: a rise followed by a fall or the reverse,
    where a move counts once it reaches min_change_kib from the last counted
    point (so slow drifts add up and jitter below 1 MiB is ignored)."""
    s = series(rows, guest, "actual_kib")
    if not s:
        return 0
    ref = s[0][1]
    direction = 0
    count = 0
    for _, v in s[1:]:
        d = v - ref
        if abs(d) < min_change_kib:
            continue
        nd = 1 if d > 0 else -1
        if direction and nd != direction:
            count += 1
        direction = nd
        ref = v
    return count


def metrics(rows: List[Dict], consoles=None, threshold_kib: float = 100 * 1024,
            budget_kib: Optional[float] = None, host_floor_kib: Optional[float] = None) -> Dict:
    """All the metrics for every guest, as one dict (what `sampler.py metrics` prints)."""
    out = {"guests": {}, "samples": len(_ticks(rows)),
           "headroom": lowest_headroom(rows, budget_kib, host_floor_kib)}
    ooms = oom_kills(consoles) if consoles else {}
    for g in guests_in(rows):
        rec = recovery_time(rows, g, threshold_kib)
        out["guests"][g] = {
            "oom": ooms.get(g),
            "recovery_max_s": rec["max_s"],
            "low_unused_episodes": len(rec["episodes"]),
            "largest_release_share": largest_release_share(rows, g)["share"],
            "reversals": reversals(rows, g),
        }
    return out


def _cli(argv=None) -> int:
    ap = argparse.ArgumentParser(description="record / measure balloon stats of test guests")
    ap.add_argument("--uri", default=DEFAULT_URI)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--out", required=True)
    rec.add_argument("--prefix", default=DEFAULT_PREFIX)
    rec.add_argument("--duration", type=float, default=None, help="seconds (default: until SIGINT)")
    rec.add_argument("--interval", type=float, default=1.0)
    met = sub.add_parser("metrics")
    met.add_argument("csv")
    met.add_argument("--console-dir")
    met.add_argument("--threshold-mib", type=float, default=100)
    met.add_argument("--budget-mib", type=float)
    met.add_argument("--host-floor-mib", type=float)
    a = ap.parse_args(argv)
    if a.cmd == "record":
        s = Sampler(a.out, uri=a.uri, prefix=a.prefix, interval=a.interval).start()
        try:
            end = time.monotonic() + a.duration if a.duration else None
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            s.stop()
        for e in s.errors:
            print(f"sampler: {e}", file=sys.stderr)
        print(f"{s.samples} samples -> {a.out}")
        return 0
    m = metrics(load_csv(a.csv), a.console_dir, a.threshold_mib * 1024,
                a.budget_mib * 1024 if a.budget_mib is not None else None,
                a.host_floor_mib * 1024 if a.host_floor_mib is not None else None)
    print(json.dumps(m, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
