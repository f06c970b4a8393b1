#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Faults memcoordd must survive on real libvirtd and real guests, one case per run:

  restart       libvirtd killed with SIGKILL mid-ramp and started again: the daemon keeps
                running and answering, says it lost the connection, reconnects, learns the
                guest again (same UUID), sets no target from a reading older than the kill,
                and manages the guest after; the guest is neither lost nor OOM-killed.
  cycles        100 paused guests created and destroyed while the daemon runs: it sees each
                come and go, and its private memory (RssAnon) stays flat.
  job-metadata  a guest in a long libvirt job (`virsh dump` into a FIFO nobody reads) is
                `busy` and left alone while ticks keep their cadence, the bus answers and
                another guest is managed; managed again once the job ends. The other guest
                carries memcoord's <metadata> from its creation: its limits hold from its
                first tick, and `virsh metadata --set` takes effect within a tick.

    faults.py --case restart|cycles|job-metadata --build-dir BUILD --out DIR

Needs root (exit 77 without). Every guest, daemon and bus started here is torn down by
e2elib.Host; libvirtd is killed only when this run started it. See README.md here,
"Faults survived".
"""

import argparse
import fcntl
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import traceback
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib as E  # noqa: E402
from e2elib import MIB, G, log  # noqa: E402

INTERVAL_S = 1.0
META_NS = "https://memcoord.org/xmlns/limits/1"


def config(default_min_mib: int = 256) -> str:
    """The e2e scenarios' settings (README's defaults written out)."""
    return ("[Coordinator]\nIntervalSec=1\nDomainThreshold=100M\nHostThreshold=200M\n"
            f"ClaimFraction=0.10\nGrantFactor=2\nDefaultMin={default_min_mib}M\nDeadBand=1M\n")
OOM = re.compile(r"Out of memory|oom-kill|Killed process")
HELD = re.compile(r"^memdemand t=(\d+) held_mib=(\d+) phase=(\S+)")
LOG_LOST = re.compile(r"^memcoordd: Lost the connection to (\S+); reconnecting")
LOG_CONNECTED = re.compile(r"^memcoordd: Connected to (\S+)")
LOG_WATCHED = re.compile(r"^memcoordd: (\S+): now watched$")
LOG_GONE = re.compile(r"^memcoordd: (\S+): gone$")

# The cycles case: how many, and how flat RssAnon must stay (see README.md, "Faults survived").
CYCLES = 100
WARMUP_CYCLES = 20
BATCH = 10
RSS_GROWTH_BOUND_KIB = 96


class Failed(AssertionError):
    pass


class Checks:
    """Every assertion of a case, printed as a table; the case fails if one fails."""

    def __init__(self, case: str):
        self.case = case
        self.rows: List[Tuple[bool, str, str]] = []
        self.figures: Dict[str, str] = {}

    def check(self, ok: bool, what: str, measured: str) -> bool:
        self.rows.append((bool(ok), what, measured))
        log(f"{'ok  ' if ok else 'FAIL'} {what}: {measured}")
        return bool(ok)

    def figure(self, key: str, value: str) -> None:
        self.figures[key] = value

    def report(self, path: str) -> int:
        lines = [f"# faults: {self.case}", ""]
        lines += [f"| {'ok' if ok else '**FAIL**'} | {w} | {m} |" for ok, w, m in self.rows]
        lines += ["", "figures:"] + [f"- {k}: {v}" for k, v in self.figures.items()]
        text = "\n".join(lines) + "\n"
        with open(path, "w") as f:
            f.write(text)
        print(text, flush=True)
        failed = [w for ok, w, _ in self.rows if not ok]
        if not self.rows:
            print("FAIL: no check ran", flush=True)
            return 1
        if failed:
            print(f"FAIL: {len(failed)} of {len(self.rows)} checks: " + "; ".join(failed), flush=True)
            return 1
        print(f"PASS: {len(self.rows)} checks", flush=True)
        return 0


# ---------------------------------------------------------------------------------------------
# The host and the daemon

class Setup:
    """Our turn on the host, libvirtd, the private bus, and (start_daemon) memcoordd with a
    recorder. teardown() undoes all of it."""

    def __init__(self, a, case: str):
        self.a = a
        self.work = os.path.join(os.path.abspath(a.out), f"faults-{case}")
        os.makedirs(self.work, exist_ok=True)
        for n in os.listdir(self.work):
            p = os.path.join(self.work, n)
            if os.path.isfile(p):
                os.unlink(p)
        self.state = os.path.join(a.work, "libvirt-host")
        self.host = E.Host(self.work, a.kit, a.build_dir, self.state)
        self.rec: Optional[E.Recorder] = None
        self.daemon = None
        self.client = None
        self.libvirtd_ours = False
        self.t_turn: Optional[float] = None

    def start(self) -> None:
        if not os.access(self.host.memcoordd, os.X_OK):
            raise RuntimeError(f"{self.host.memcoordd} missing: build first (ninja -C BUILD)")
        E.build_kit(self.a.kit)
        # Our turn first: a run that ends meanwhile stops the libvirtd it started.
        E.take_turn()
        self.t_turn = time.monotonic()
        record = os.path.join(self.state, "libvirtd.started")
        had_record = os.path.exists(record)
        self.host.start_libvirt()
        self.libvirtd_ours = self.host.libvirt_started and not had_record
        E.wait_for_quiet_host(E.PREFIX, timeout=self.a.wait_foreign)
        self.host.start_bus()

    def libvirtd_pid(self) -> int:
        with open(os.path.join(self.state, "libvirtd.started")) as f:
            return int(f.read().strip())

    def start_daemon(self, ours: List[str], env: Optional[Dict[str, str]] = None, conf: str = ""):
        saved = dict(os.environ)
        os.environ.update(env or {})
        try:
            self.daemon = self.host.start_daemon(conf or config())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        self.rec = E.Recorder(self.host.bus, self.daemon, ours)
        self.host.on_teardown(self.rec.stop)
        self.client = E.mctest.Client(self.host.bus)
        return self.daemon

    def boot(self, specs: List[dict]) -> None:
        t = time.monotonic()
        log(f"booting {', '.join(s['name'] for s in specs)}")
        self.host.boot(specs, os.path.join(self.work, "console"))
        log(f"booted and settled in {time.monotonic() - t:.1f} s")

    def stop_daemon(self, c: Checks) -> None:
        """SIGTERM: exit 0 and no sanitizer report in its log. Keeps what was recorded."""
        self.rec.stop()
        E.save_json(os.path.join(self.work, "run.json"),
                    {"signals": self.rec.signals(), "views": self.rec.views, "log": self.rec.log_lines,
                     "errors": self.rec.errors})
        try:
            status = self.host.stop_daemon()
            c.check(status == 0, "memcoordd exits 0 on SIGTERM, no sanitizer report", f"exit {status}")
        except AssertionError as e:
            c.check(False, "memcoordd exits 0 on SIGTERM, no sanitizer report", str(e)[:2000])

    def teardown(self, c: Optional[Checks] = None) -> None:
        self.host.teardown()
        stray = self.host.stray()
        if c is not None:
            c.check(not stray, "nothing of ours left after teardown", ", ".join(stray) or "none")

    # -- what the daemon said -------------------------------------------------------------

    def log_since(self, t0: float, pattern: re.Pattern) -> List[Tuple[float, re.Match]]:
        out = []
        for ep, line in list(self.rec.log_lines):
            m = pattern.match(line)
            if ep >= t0 and m:
                out.append((ep, m))
        return out

    def wait_log(self, pattern: re.Pattern, t0: float, timeout: float) -> Optional[float]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            hits = self.log_since(t0, pattern)
            if hits:
                return hits[0][0]
            time.sleep(0.05)
        return None

    def ticks(self, t0: float = 0.0, t1: float = float("inf")) -> List[dict]:
        return [s for s in self.rec.signals() if s["kind"] == "tick" and t0 <= s["epoch"] <= t1]

    def changes(self, name: str, t0: float = 0.0, t1: float = float("inf")) -> List[dict]:
        return [s for s in self.rec.signals()
                if s["kind"] == "balloon" and s["guest"] == name and t0 <= s["epoch"] <= t1]

    def view(self, name: str) -> Optional[dict]:
        """The daemon's current view of one guest (ListDomains)."""
        for d in self.client.list_domains():
            if d["name"] == name:
                return d
        return None

    def views_of(self, name: str, t0: float = 0.0, t1: float = float("inf")) -> List[Tuple[int, float, dict]]:
        out = []
        for tick, (ep, doms) in sorted(self.rec.views.items()):
            if t0 <= ep <= t1:
                for d in doms:
                    if d["name"] == name:
                        out.append((tick, ep, d))
        return out

    def wait_view(self, name: str, pred, timeout: float, what: str) -> Tuple[float, dict]:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            d = self.view(name)
            last = d
            if d is not None and pred(d):
                return time.time(), d
            time.sleep(0.1)
        raise Failed(f"{what}: not within {timeout:.0f} s (last view {last})")


def timed_get(client, prop: str, **kw) -> Tuple[float, object]:
    t = time.monotonic()
    v = client.get(prop, **kw)
    return time.monotonic() - t, v


def rss_anon_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError(f"no RssAnon in /proc/{pid}/status")


def console_checks(c: Checks, s: Setup, names: List[str]) -> None:
    for n in names:
        text = s.host.guests.console_text(n)
        ooms = [line for line in text.splitlines() if OOM.search(line)]
        c.check(not ooms, f"{n}: no OOM kill on its console", "; ".join(ooms[:3]) or "none")


def running(names: List[str]) -> List[str]:
    alive = set(G.running_domains(E.URI))
    return [n for n in names if n in alive]


def qemu_pid(name: str) -> Optional[int]:
    p = f"/run/libvirt/qemu/{name}.pid"
    try:
        with open(p) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def fmt_s(x: Optional[float]) -> str:
    return "never" if x is None else f"{x:.2f} s"


# ---------------------------------------------------------------------------------------------
# libvirtd killed and started again mid-ramp

def case_restart(a, s: Setup, c: Checks) -> None:
    if not s.libvirtd_ours:
        raise E.Skip("libvirtd was running before this run started it: it is not ours to kill")
    name = f"{E.PREFIX}fr"
    # 384 of 512 MiB, claimed down to its floor of 320 MiB while idle; then 240 MiB over 30 s
    # (8 MiB/s), hold, free. The kill lands 4 s into the ramp (~32 MiB held): nobody can grant
    # while libvirtd is away, and the outage until the daemon acts again is ~8 s here (the
    # reconnect backoff retries 1, 3, 7, 15 s after the loss), 15 s at worst: +120 MiB, which
    # the ~190 MiB unused at 320 MiB absorbs above the guest's OOM point (~47 MiB free). The
    # rest of the ramp needs grants.
    sched = "idle:8,ramp:240:30,hold:8,free,idle:6"
    s.boot([dict(name=name, schedule=sched, current_mib=384, max_mib=512)])
    ready = s.host.guests.guests[name].ready_line_at
    s.start_daemon([name], conf=config(default_min_mib=320))
    _, d0 = s.wait_view(name, lambda d: d["status"] == "managed", 20, f"{name} managed")
    uuid = d0["uuid"]
    pid0 = qemu_pid(name)
    c.check(pid0 is not None, f"{name}: its QEMU pid is known", str(pid0))

    # Mid-ramp: 4 s after the ramp began.
    t_ramp = ready + 8
    while time.time() < t_ramp + 4:
        time.sleep(0.1)
    held = [int(m.group(2)) for m in map(HELD.match, s.host.guests.console_text(name).splitlines()) if m]
    c.figure("held at the kill", f"{held[-1] if held else '?'} MiB")

    lpid = s.libvirtd_pid()
    t_kill = time.time()
    os.kill(lpid, signal.SIGKILL)
    log(f"libvirtd (pid {lpid}) killed with SIGKILL")
    while os.path.exists(f"/proc/{lpid}"):
        if time.time() - t_kill > 10:
            raise RuntimeError(f"libvirtd pid {lpid} still there 10 s after SIGKILL")
        time.sleep(0.02)

    # The outage: the daemon runs and answers; it says so.
    t_lost = s.wait_log(LOG_LOST, t_kill, 10)
    c.check(t_lost is not None, "memcoordd logs the lost connection",
            f"{fmt_s(t_lost - t_kill if t_lost else None)} after the kill")
    lat, states = [], []
    t_out_end = time.time() + 3
    while time.time() < t_out_end:
        try:
            dt, st = timed_get(s.client, "State")
            lat.append(dt)
            states.append(st)
        except AssertionError as e:
            lat.append(float("inf"))
            states.append(f"error: {e}")
        time.sleep(0.2)
    c.check(s.daemon.proc.poll() is None, "memcoordd keeps running while libvirtd is gone",
            "running" if s.daemon.proc.poll() is None else f"exited {s.daemon.proc.returncode}")
    c.check(lat and max(lat) < 1.0, "the bus answers during the outage (State, every 0.2 s, each < 1 s)",
            f"{len(lat)} calls, max {max(lat):.3f} s")
    c.check(states and all(x == "disconnected" for x in states[-3:]),
            "State is `disconnected` during the outage", ", ".join(sorted(set(map(str, states)))))
    c.figure("bus latency during the outage", f"median {statistics.median(lat) * 1000:.0f} ms, "
             f"max {max(lat) * 1000:.0f} ms ({len(lat)} calls)")

    t_restart0 = time.time()
    p = subprocess.run([os.path.join(E.GUEST_DIR, "libvirt-host.sh"), "start", s.state],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=s.host.env())
    if p.returncode != 0:
        raise RuntimeError(f"libvirt-host.sh start (restart) failed:\n{p.stdout[-2000:]}")
    t_back = time.time()
    log(f"libvirtd answers again after {t_back - t_restart0:.1f} s (pid {s.libvirtd_pid()})")
    c.figure("libvirtd outage (kill to answering again)", f"{t_back - t_kill:.1f} s")

    t_conn = s.wait_log(LOG_CONNECTED, t_kill, 40)
    c.check(t_conn is not None, "memcoordd logs `Connected to` again",
            f"{fmt_s(t_conn - t_back if t_conn else None)} after libvirtd answered")
    st = s.client.get("State")
    c.check(st == "running", "State is `running` after the reconnect", st)
    if t_conn:
        c.figure("reconnect (libvirtd answering to `Connected to`)", f"{t_conn - t_back:.2f} s")
    t_seen, d1 = s.wait_view(name, lambda d: True, 10, f"{name} on the bus again")
    c.check(d1["uuid"] == uuid, f"{name} learnt again with the same UUID", f"{d1['uuid']} (was {uuid})")
    path_uuid = s.client.get("UUID", path=d1["path"], iface=E.mctest.DOMAIN_IFACE)
    c.check(path_uuid == uuid, f"{name}'s bus object answers with its UUID", f"{d1['path']}: {path_uuid}")
    c.figure("guest back on the bus (after `Connected to`)", fmt_s(t_seen - t_conn if t_conn else None))
    c.check(name in running([name]) and qemu_pid(name) == pid0, f"{name} not lost: still running, same QEMU",
            f"pid {qemu_pid(name)} (was {pid0})")

    # Out to the end of the schedule, then the stale-stats and management checks.
    t_end = ready + G.schedule_duration(sched) + 2
    while time.time() < t_end:
        time.sleep(0.5)
    c.check(name in running([name]), f"{name} still running at the end", "yes" if running([name]) else "no")
    s.stop_daemon(c)

    # No target from stale stats: between the kill and the first tick after the reconnect whose
    # reading of the guest was taken after the kill (the tick's ListDomains: tick time minus
    # StatsAgeUSec, the age of balloon.last-update as the daemon saw it), no BalloonChanged and
    # no balloon line in the log; and every change after that belongs to a tick whose reading is
    # from after the kill (+1 s: last-update counts whole seconds).
    fresh_ticks = []
    for tick, ep, d in s.views_of(name, t_kill):
        if d["stats_age"] < 2**63 and ep - d["stats_age"] / 1e6 > t_kill + 1:
            fresh_ticks.append((tick, ep))
    c.check(bool(fresh_ticks), "a fresh reading after the reconnect",
            f"first at {fmt_s(fresh_ticks[0][1] - t_kill if fresh_ticks else None)} after the kill")
    if fresh_ticks:
        c.figure("kill to the first fresh reading (its tick's view)", f"{fresh_ticks[0][1] - t_kill:.2f} s")
    # A change belongs to the tick whose TickCompleted follows it; that tick's view is read after.
    fresh_tick = fresh_ticks[0][0] if fresh_ticks else None
    early_sig = [x for x in s.changes(name, t_kill)
                 if fresh_tick is None or x["tick"] is None or x["tick"] < fresh_tick]
    t_fresh_sig = min([x["epoch"] for x in s.ticks(t_kill) if x["tick"] == fresh_tick] or [float("inf")])
    early_log = [line for ep, line in s.rec.log_lines
                 if t_kill <= ep < t_fresh_sig - 0.5 and E.BALLOON_LINE.match(line)]
    c.check(not early_sig and not early_log,
            "no balloon change between the kill and the first fresh reading after it",
            f"{len(early_sig)} BalloonChanged, {len(early_log)} log lines")
    views = {tick: (ep, d) for tick, ep, d in s.views_of(name, t_kill)}
    stale = []
    after = s.changes(name, t_kill)
    for ch in after:
        v = views.get(ch["tick"])
        if v is None:
            stale.append(f"tick {ch['tick']}: no view of it")
        elif v[1]["stats_age"] >= 2**63 or v[0] - v[1]["stats_age"] / 1e6 <= t_kill + 1:
            stale.append(f"tick {ch['tick']}: reading {v[0] - v[1]['stats_age'] / 1e6 - t_kill:+.1f} s from the kill")
    c.check(not stale, "every change after the kill acted on a reading taken after it",
            f"{len(after)} changes; " + ("; ".join(stale[:5]) or "all fresh"))
    reasons = sorted({ch["reason"] for ch in after})
    c.check(bool(after), f"{name} managed after the reconnect (a balloon change)",
            f"{len(after)} changes ({', '.join(reasons) or 'none'})")
    c.check(any(ch["reason"] in ("grant", "crunch-grant") for ch in after),
            "the rest of the ramp is granted after the reconnect",
            f"grants: {sum(ch['reason'] in ('grant', 'crunch-grant') for ch in after)}")
    console_checks(c, s, [name])
    c.check(not s.rec.errors, "the recorder saw no bus error", "; ".join(s.rec.errors[:3]) or "none")


# ---------------------------------------------------------------------------------------------
# 100 guests created and destroyed

def case_cycles(a, s: Setup, c: Checks) -> None:
    # BATCH guests at a time (one alone takes ~3 s here, nearly all of it waiting on libvirtd and
    # QEMU, not on the CPU), CYCLES in all.
    names = [f"{E.PREFIX}fc{i}" for i in range(BATCH)]
    kit = G.Guests(a.kit, os.path.join(s.work, "console"), prefix=E.PREFIX)
    xmls = {}
    for n in names:
        kit.add(n, current_mib=128, max_mib=128)
        xmls[n] = os.path.join(s.work, f"{n}.xml")
        with open(xmls[n], "w") as f:
            f.write(kit.domain_xml(kit.guests[n]))
    # Under ASan, RSS grows by itself: freed memory waits in a quarantine (256 MiB by default)
    # and every allocation's stack goes to a depot that only grows (on libvirt's test driver,
    # flat without ASan, +1.2 MiB over 300 cycles with it). Both off for this daemon, so
    # RssAnon shows what the daemon holds; leak detection stays on (reports without stacks).
    asan = os.environ.get("ASAN_OPTIONS", "")
    asan = ":".join(x for x in (asan, "quarantine_size_mb=0", "thread_local_quarantine_size_kb=0",
                               "malloc_context_size=0") if x)
    s.start_daemon(names, env={"ASAN_OPTIONS": asan})
    pid = s.daemon.proc.pid
    c.figure("ASAN_OPTIONS of the daemon", asan)

    inflight: List[subprocess.Popen] = []

    def destroy_left() -> None:
        # A signal may land while creates run: let them finish, or a guest would appear after
        # its destroy.
        deadline = time.monotonic() + 60
        for p in list(inflight):
            while p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        G.destroy_domains(E.URI, [n for n in G.running_domains(E.URI) if n in names])
    s.host.on_teardown(destroy_left)

    def all_of(verb: str, *extra: str) -> None:
        procs = []
        for n in names:
            p = subprocess.Popen(["virsh", "-q", "-c", E.URI, verb, xmls[n] if verb == "create" else n, *extra],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            inflight.append(p)
            procs.append((n, p))
        errs = []
        for n, p in procs:
            _, err = p.communicate(timeout=120)
            inflight.remove(p)
            if p.returncode != 0:
                errs.append(f"virsh {verb} {n}: {err.strip()}")
        if errs:
            raise RuntimeError("; ".join(errs))

    rss = [(0, rss_anon_kib(pid))]
    t0 = time.time()
    times = []
    for i in range(BATCH, CYCLES + 1, BATCH):
        t = time.monotonic()
        all_of("create", "--paused")
        all_of("destroy")
        times.append(time.monotonic() - t)
        if i % 10 == 0:
            rss.append((i, rss_anon_kib(pid)))
            log(f"cycle {i}: RssAnon {rss[-1][1]} KiB")
        if s.daemon.proc.poll() is not None:
            break
    t1 = time.time()
    # The last "gone" and two more ticks.
    deadline = time.time() + 10
    while time.time() < deadline and len(s.log_since(t0, LOG_GONE)) < CYCLES:
        time.sleep(0.1)
    time.sleep(2 * INTERVAL_S)
    rss.append((CYCLES, rss_anon_kib(pid)))
    alive = s.daemon.proc.poll() is None
    c.check(alive, "memcoordd runs through the cycles", "running" if alive else f"exited {s.daemon.proc.returncode}")
    c.figure(f"round of {BATCH} cycles (virsh create --paused, then destroy, {BATCH} at once)",
             f"median {statistics.median(times):.2f} s, max {max(times):.2f} s; {t1 - t0:.0f} s for "
             f"{len(times) * BATCH} cycles")
    watched = [m for _, m in s.log_since(t0, LOG_WATCHED) if m.group(1) in names]
    gone = [m for _, m in s.log_since(t0, LOG_GONE) if m.group(1) in names]
    c.check(len(watched) == CYCLES and len(gone) == CYCLES,
            f"the daemon saw every guest come and go ({CYCLES} `now watched`, {CYCLES} `gone`)",
            f"{len(watched)} now watched, {len(gone)} gone")
    added = [m for m in s.rec.monitor.signals("InterfacesAdded")]
    removed = [m for m in s.rec.monitor.signals("InterfacesRemoved")]
    c.check(len(added) >= CYCLES and len(removed) >= CYCLES,
            f"the bus announced every guest object (ObjectManager, >= {CYCLES} each)",
            f"{len(added)} InterfacesAdded, {len(removed)} InterfacesRemoved")
    left = [d["name"] for d in s.client.list_domains()]
    c.check(not set(names) & set(left), "none of them left on the bus", ", ".join(left) or "none")
    tree = s.client.busctl("tree", "--list", E.mctest.BUS_NAME)
    objs = [p for p in tree.split() if p.startswith("/org/memcoord/domain/")]
    c.check(not objs, "no domain object left in the bus tree", ", ".join(objs) or "none")
    base = dict(rss)[WARMUP_CYCLES]
    end = rss[-1][1]
    c.figure("RssAnon (KiB) by cycle", ", ".join(f"{i}: {k}" for i, k in rss))
    c.check(end - base <= RSS_GROWTH_BOUND_KIB,
            f"RssAnon flat: from cycle {WARMUP_CYCLES} to the end it grows at most {RSS_GROWTH_BOUND_KIB} KiB",
            f"{base} -> {end} KiB ({end - base:+d} KiB; {rss[0][1]} KiB before the first cycle)")
    s.stop_daemon(c)


# ---------------------------------------------------------------------------------------------
# A guest in a long libvirt job; settings in the domain XML

def meta_xml(**attrs) -> str:
    body = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    return f'<memcoord:limits xmlns:memcoord="{META_NS}" {body}/>'


def set_meta(name: str, **attrs) -> float:
    """virsh metadata --set (live): returns the time it returned."""
    body = " ".join(f'{k}="{v}"' for k, v in attrs.items())
    G.virsh(E.URI, "metadata", name, META_NS, "--key", "memcoord", "--set", f"<limits {body}/>", "--live",
            timeout=30)
    return time.time()


def case_job_metadata(a, s: Setup, c: Checks) -> None:
    job = f"{E.PREFIX}fj"
    meta = f"{E.PREFIX}fm"
    s.boot([dict(name=job, schedule="idle", current_mib=384, max_mib=512)])
    s.start_daemon([job, meta])
    mon = s.rec.monitor
    s.wait_view(job, lambda d: d["status"] == "managed", 20, f"{job} managed")

    # The metadata guest, created while the daemon runs: its limits from its first sight.
    lim = dict(min=200 * MIB, max=320 * MIB, weight=300)
    s.host.guests.add(meta, schedule="idle", current_mib=384, max_mib=512,
                      metadata=meta_xml(min="200M", max="320M", weight="300", exclude="no"))
    mark = mon.mark()
    t_create = time.time()
    s.host.guests.start(names=[meta])
    added = mon.wait_signal("InterfacesAdded", since=mark, timeout=20,
                            where=lambda m: "org.memcoord1.Domain" in m["payload"]["data"][1] and
                            m["payload"]["data"][1]["org.memcoord1.Domain"]["Name"]["data"] == meta)
    if added is None:
        raise Failed(f"{meta}: no InterfacesAdded within 20 s of its creation")
    # The object appears at libvirt's lifecycle event, before the first reading of the guest
    # (which reads the metadata): what it shows then is a figure; the first tick is asserted.
    props = {k: v["data"] for k, v in added["payload"]["data"][1]["org.memcoord1.Domain"].items()}
    c.figure("limits on the object at its InterfacesAdded (min KiB, max KiB, weight, excluded)",
             str((props["MinBytes"] // 1024, props["MaxBytes"] // 1024, props["Weight"], props["Excluded"])))
    first = None
    deadline = time.time() + 5
    while first is None and time.time() < deadline:
        later = [m for m in mon.signals("TickCompleted") if m["_received"] > added["_received"]]
        first = later[0] if later else None
        time.sleep(0.05)
    if first is None:
        raise Failed(f"no tick within 5 s of {meta}'s appearance")
    tick1 = first["payload"]["data"][0]
    deadline = time.time() + 3
    while time.time() < deadline and tick1 not in s.rec.views:
        time.sleep(0.05)
    v = [d for d in s.rec.views.get(tick1, (0, []))[1] if d["name"] == meta]
    if v:
        d = v[0]
        got = (d["min"] // 1024, d["max"] // 1024, d["weight"], d["status"] == "excluded")
        c.check(got == (lim["min"], lim["max"], lim["weight"], False),
                f"{meta}: at the first tick after it appeared (tick {tick1}) the daemon has the metadata's "
                "min, max, weight, not excluded", f"{got} (KiB), status {d['status']}")
        c.figure("first tick after the guest appeared", f"{first['_received'] - added['_received']:.2f} s later")
    else:
        c.check(False, f"{meta}: a view of its first tick ({tick1})", "none recorded")
    s.host.guests.wait_ready(timeout=180, names=[meta])
    t_cap, d = s.wait_view(meta, lambda d: d["actual"] <= lim["max"] * 1024 + MIB * 1024, 30,
                           f"{meta} balloon at or below the metadata's max")
    c.check(True, f"{meta}: balloon brought to the metadata's max", f"{d['actual'] // MIB // 1024} MiB")
    over = [f"{x['to_kib'] // MIB} MiB ({x['reason']})" for x in s.changes(meta) if x["to_kib"] > lim["max"]]
    c.check(not over, f"{meta}: no target set above the metadata's max of {lim['max'] // MIB} MiB",
            f"{len(s.changes(meta))} changes, {len(over)} above" + (f": {over[:5]}" if over else ""))

    # Baseline: tick cadence and bus latency before the job.
    t_b0 = time.time()
    base_lat = []
    while time.time() < t_b0 + 3:
        base_lat.append(timed_get(s.client, "TickCount")[0])
        time.sleep(0.1)

    # The job: `virsh dump --live` into a FIFO we hold open and never read. QEMU writes the
    # guest's memory into it; the pipe fills at 64 KiB and the job waits, as long as we like.
    fifo = os.path.join(s.work, "dump.fifo")
    if os.path.exists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo)
    rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    dumper = subprocess.Popen(["virsh", "-q", "-c", E.URI, "dump", job, fifo, "--live"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def end_dump() -> None:
        if dumper.poll() is None:
            G.virsh(E.URI, "domjobabort", job, check=False, timeout=30)
            try:
                dumper.wait(30)
            except subprocess.TimeoutExpired:
                dumper.kill()
    s.host.on_teardown(end_dump)
    t_job = time.time()
    # Something the daemon must do to this guest, so it tries and finds the job: a max below
    # what it holds (and a floor below that), applied only once the job ends.
    act = s.view(job)["actual"] // 1024
    job_max = act - 24 * MIB
    s.client.call("SetDomainLimits", f"string:{job}", f"uint64:{200 * MIB * 1024}", f"uint64:{job_max * 1024}",
                  "uint32:0")
    t_busy, _ = s.wait_view(job, lambda d: d["status"] == "busy", 10, f"{job} busy during its job")
    c.check(True, f"{job}: status `busy` while its dump runs", f"{t_busy - t_job:.2f} s after the job started")
    c.figure("busy seen", f"{t_busy - t_job:.2f} s after `virsh dump` started")

    # During the job: another guest's metadata changes, the bus is timed, ticks are counted.
    t_meta0 = time.time() + 2
    lat = []
    mark = mon.mark()
    t_set = None
    while time.time() < t_busy + 12:
        if t_set is None and time.time() > t_meta0:
            t_set = set_meta(meta, min="200M", max="256M", weight="300")
        lat.append(timed_get(s.client, "TickCount")[0])
        time.sleep(0.1)
    t_job_end = time.time()
    still = dumper.poll() is None
    c.check(still, f"{job}: the dump still runs after {t_job_end - t_job:.0f} s", "running" if still else
            f"ended: {dumper.stdout.read() if dumper.stdout else ''}")
    jt = s.ticks(t_busy, t_job_end)
    gaps = [b["epoch"] - a_["epoch"] for a_, b in zip(jt, jt[1:])]
    c.check(len(gaps) >= 8 and max(gaps) <= INTERVAL_S + 0.5,
            "ticks keep their cadence during the job (every gap <= interval + 0.5 s)",
            f"{len(jt)} ticks in {t_job_end - t_busy:.1f} s; gaps median {statistics.median(gaps):.2f} s, "
            f"max {max(gaps):.2f} s" if gaps else "no ticks")
    c.figure("tick gaps during the job", f"median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s, "
             f"{len(jt)} ticks" if gaps else "none")
    c.check(max(lat) <= 0.5, "the bus answers during the job (TickCount every 0.1 s, each <= 0.5 s)",
            f"{len(lat)} calls, median {statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
            f"(before the job: median {statistics.median(base_lat) * 1000:.0f} ms, max {max(base_lat) * 1000:.0f} ms)")
    c.figure("bus latency (busctl get-property)", f"during the job median {statistics.median(lat) * 1000:.0f} ms, "
             f"max {max(lat) * 1000:.0f} ms; before median {statistics.median(base_lat) * 1000:.0f} ms")
    jv = s.views_of(job, t_busy + 0.5, t_job_end)
    c.check(jv and all(d["status"] == "busy" for _, _, d in jv), f"{job}: `busy` at every tick of the job",
            f"{len(jv)} views: " + ", ".join(sorted({d['status'] for _, _, d in jv})))
    c.check(not s.changes(job, t_job, t_job_end), f"{job}: no balloon change while busy (its lower max waits)",
            f"{len(s.changes(job, t_job, t_job_end))} changes")

    # The metadata change, during the job: the bus within a tick, the balloon after.
    pc = mon.wait_properties_changed("MaxBytes", 256 * MIB * 1024, since=mark, timeout=0.1,
                                     path=s.view(meta)["path"])
    if pc is not None:
        dt = pc["_received"] - (time.monotonic() - (time.time() - t_set))
        c.check(dt <= INTERVAL_S + 0.5, f"{meta}: `virsh metadata --set` max=256M on the bus within a tick",
                f"MaxBytes changed {dt:.2f} s after virsh returned")
        c.figure("metadata change to MaxBytes on the bus", f"{dt:.2f} s")
    else:
        c.check(False, f"{meta}: `virsh metadata --set` max=256M on the bus", "no PropertiesChanged")
    ch = [x for x in s.changes(meta, t_set) if x["to_kib"] <= 256 * MIB]
    c.check(bool(ch) and ch[0]["epoch"] - t_set <= 2 * INTERVAL_S + 0.5,
            f"{meta}: the balloon follows the lower max during the other guest's job (<= 2 ticks)",
            f"{ch[0]['from_kib'] // MIB} -> {ch[0]['to_kib'] // MIB} MiB ({ch[0]['reason']}) "
            f"{ch[0]['epoch'] - t_set:.2f} s after" if ch else "no change to 256 MiB or below")
    if ch:
        c.figure("metadata change to balloon change", f"{ch[0]['epoch'] - t_set:.2f} s")

    under = [f"{x['to_kib'] // MIB} MiB ({x['reason']})" for x in s.changes(meta) if x["to_kib"] < lim["min"]]
    c.check(not under, f"{meta}: no target set below the metadata's min of {lim['min'] // MIB} MiB",
            f"{len(s.changes(meta))} changes, {len(under)} below" + (f": {under[:5]}" if under else ""))

    # The job ends: the guest is managed again, and its pending lower max lands.
    t_abort = time.time()
    G.virsh(E.URI, "domjobabort", job, timeout=30)
    os.close(rd)
    try:
        dumper.wait(30)
    except subprocess.TimeoutExpired:
        pass
    t_m, _ = s.wait_view(job, lambda d: d["status"] == "managed", 10, f"{job} managed after its job")
    c.check(True, f"{job}: `managed` again after the job", f"{t_m - t_abort:.2f} s after domjobabort")
    ch = s.changes(job, t_abort)
    deadline = time.time() + 3 * INTERVAL_S
    while not ch and time.time() < deadline:
        time.sleep(0.1)
        ch = s.changes(job, t_abort)
    c.check(bool(ch) and ch[0]["to_kib"] <= job_max and ch[0]["reason"] == "clamp",
            f"{job}: the lower max set during the job ({job_max // MIB} MiB) lands after it (clamp)",
            f"{ch[0]['from_kib'] // MIB} -> {ch[0]['to_kib'] // MIB} MiB ({ch[0]['reason']}) "
            f"{ch[0]['epoch'] - t_abort:.2f} s after the abort" if ch else "no change")
    c.check(job in running([job]), f"{job}: still running after its job", G.virsh(E.URI, "domstate", job).strip())

    # Exclude through the metadata: the guest is left alone from the next tick.
    mark = mon.mark()
    t_x = set_meta(meta, min="200M", max="256M", weight="300", exclude="yes")
    pc = mon.wait_properties_changed("Excluded", True, since=mark, timeout=INTERVAL_S + 2,
                                     path=s.view(meta)["path"])
    dt = pc["_received"] - (time.monotonic() - (time.time() - t_x)) if pc else None
    c.check(pc is not None and dt <= INTERVAL_S + 0.5, f"{meta}: exclude=\"yes\" on the bus within a tick",
            f"Excluded true {fmt_s(dt)} after virsh returned")
    if dt is not None:
        c.figure("metadata exclude to Excluded on the bus", f"{dt:.2f} s")
    _, d = s.wait_view(meta, lambda d: d["status"] == "excluded", 3, f"{meta} excluded")
    # Moved by hand: an excluded guest stays where it is put.
    G.virsh(E.URI, "setmem", meta, "300M", "--live", timeout=30)
    t_hand = time.time()
    time.sleep(3 * INTERVAL_S)
    moved = s.changes(meta, t_x)
    c.check(not moved, f"{meta}: no balloon change once excluded (also after `virsh setmem 300M`)",
            f"{len(moved)} changes")
    st = G.balloon_stats(E.URI, names=[meta]).get(meta, {})
    c.figure("excluded guest's balloon 3 s after setmem 300M", f"{st.get('current', 0) // MIB} MiB")
    _ = t_hand
    s.stop_daemon(c)
    console_checks(c, s, [job, meta])
    c.check(not s.rec.errors, "the recorder saw no bus error", "; ".join(s.rec.errors[:3]) or "none")


CASES = {"restart": case_restart, "cycles": case_cycles, "job-metadata": case_job_metadata}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", required=True, choices=list(CASES) + ["all"],
                    help="one case, or all of them in turn within one turn on the host")
    E.add_host_arguments(ap)
    a = ap.parse_args(argv)
    try:
        E.require_host(["virsh", "libvirtd", "qemu-system-x86_64", "dbus-daemon", "busctl", "dbus-send",
                        "setpriv"])
    except E.Skip as e:
        print(f"SKIP: {e}", flush=True)
        return E.SKIP
    os.makedirs(a.out, exist_ok=True)
    if a.case != "all":
        return run_case(a, a.case)
    # One turn for all: wait for it in the kernel (a blocked flock is woken at the release,
    # before a run that starts meanwhile polls), then the cases one after another.
    f = open(E.TURN_LOCK, "w")
    log(f"waiting for this host's turn ({E.TURN_LOCK})")
    fcntl.flock(f, fcntl.LOCK_EX)
    E._turn = f
    worst = 0
    for case in CASES:
        rc = run_case(a, case)
        worst = rc if worst == 0 or rc == 1 else worst
    return worst


def run_case(a, case: str) -> int:
    t0 = time.monotonic()
    c = Checks(case)
    s = Setup(a, case)
    log(f"faults: {case}")
    try:
        s.start()
        CASES[case](a, s, c)
    except E.Skip as e:
        s.teardown()
        print(f"SKIP: {e}", flush=True)
        return E.SKIP
    except E.Disturbed as e:
        s.teardown()
        print(f"FAIL: {e}", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 - report and fail
        traceback.print_exc()
        c.check(False, "the case ran to its end", f"{type(e).__name__}: {e}"[:3000])
        if s.daemon is not None:
            print("--- memcoordd log (end) ---\n" + E.tail(s.daemon.log_path, 60), flush=True)
        if s.host.guests is not None:
            for n in s.host.guests.started:
                print(f"--- {n} console (end) ---\n" + G.console_tail(s.host.guests.guests[n].console), flush=True)
    s.teardown(c)
    c.figure("run time", f"{time.monotonic() - t0:.0f} s" + (
        f", {time.monotonic() - s.t_turn:.0f} s of it on our turn" if s.t_turn else ""))
    return c.report(os.path.join(a.out, f"faults-{case}.md"))


if __name__ == "__main__":
    sys.exit(main())
