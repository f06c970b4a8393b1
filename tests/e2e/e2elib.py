# SPDX-License-Identifier: LGPL-2.1-or-later
"""The host side of the real-guest tests: libvirtd, a private system-like bus, memcoordd, the
tiny guests, and recorders for what the daemon decided. Shared by scenarios.py and
bench-real.py.

Python standard library only. The guest kit (tests/guest) and the bus helpers of the
integration tests (tests/integration/mctest.py) are imported, not copied.

Everything started here is torn down by Host.teardown(): on a normal end, on an exception,
at interpreter exit and on SIGTERM/SIGINT (what meson sends on a timeout). Teardown destroys
only the guests this run booted, kills only processes it started, and runs libvirt-host.sh
stop (which stops libvirtd if one of our runs started it) only when no other guest runs.
"""

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
GUEST_DIR = os.path.join(SOURCE_ROOT, "tests", "guest")
INTEGRATION_DIR = os.path.join(SOURCE_ROOT, "tests", "integration")
sys.path.insert(0, GUEST_DIR)
sys.path.insert(0, INTEGRATION_DIR)

import guests as G  # noqa: E402
import mctest  # noqa: E402  (installs its own SIGTERM handler; Host replaces it)

URI = "qemu:///system"
PREFIX = "e2e-"
MIB = 1024            # KiB per MiB: every size here is in KiB unless named _mib
SKIP = 77             # meson: the test was skipped
DEFAULT_KIT = "/var/tmp/mc-e2e-kit"
DEFAULT_WORK = "/var/tmp/mc-e2e-work"
FOREIGN_WAIT_S = 120  # how long to wait for someone else's memcoordd or guests to go away

BALLOON_LINE = re.compile(r"^memcoordd: (\S+): (\d+) MiB -> (\d+) MiB \(([a-z-]+)\)( \[dry-run\])?$")
GREW_LINE = re.compile(r"^memcoordd: (\S+): balloon grew to (\d+) MiB without us")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Skip(Exception):
    """The test cannot run here (not root, a tool missing)."""


class Disturbed(Exception):
    """Something outside the test changed what it measures (another memcoordd, other guests)."""


def require_host(tools: List[str]) -> None:
    if os.geteuid() != 0:
        raise Skip("needs root (libvirtd, QEMU guests, the system-like bus)")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise Skip("missing tools: " + ", ".join(missing) +
                   " (Debian: libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients "
                   "qemu-system-x86 busybox-static gnuplot-nox dbus-daemon systemd util-linux)")


class FileLock:
    """flock on a file: the kit's cache is shared by every scenario and every run."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.f = open(path, "w")

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()
        return False


def build_kit(kit_dir: str) -> float:
    """tests/guest/build-guest.sh into the shared cache; returns the seconds it took."""
    t = time.monotonic()
    with FileLock(kit_dir.rstrip("/") + ".lock"):
        p = subprocess.run([os.path.join(GUEST_DIR, "build-guest.sh"), kit_dir],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"build-guest.sh failed:\n{p.stdout[-3000:]}")
    return time.monotonic() - t


# ---------------------------------------------------------------------------------------------
# Other users of qemu:///system

def _proc_argv(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _daemon_uri(argv: List[str]) -> str:
    """The libvirt URI a memcoordd command line connects to."""
    uri = None
    config = "/etc/memcoord/memcoord.conf"
    for i, a in enumerate(argv):
        for opt in ("--connect", "-c"):
            if a == opt and i + 1 < len(argv):
                uri = argv[i + 1]
            elif a.startswith(opt + "="):
                uri = a.split("=", 1)[1]
        for opt in ("--config", "-C"):
            if a == opt and i + 1 < len(argv):
                config = argv[i + 1]
            elif a.startswith(opt + "="):
                config = a.split("=", 1)[1]
    if uri:
        return uri
    try:
        with open(config) as f:
            for line in f:
                m = re.match(r"\s*URI\s*=\s*(\S+)", line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return URI


def foreign_daemons(own_pids: List[int]) -> List[str]:
    """memcoordd processes not ours that move the balloons of qemu:///system guests."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in own_pids:
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                if f.read().strip() != "memcoordd":
                    continue
        except OSError:
            continue
        argv = _proc_argv(int(d))
        if not argv or "--dry-run" in argv or "-n" in argv:
            continue
        uri = _daemon_uri(argv)
        if uri.startswith("qemu"):
            out.append(f"pid {d}: {' '.join(shlex.quote(a) for a in argv)}")
    return out


def foreign_domains(prefix: str = PREFIX, ours: Optional[List[str]] = None) -> Dict[str, int]:
    """Running guests on qemu:///system that are not ours: {name: actual KiB}. Ours are the
    names in `ours` when given (another run may use the same prefix), else the prefixed ones."""
    try:
        running = G.running_domains(URI)
    except G.GuestError:
        return {}
    if ours is not None:
        names = [n for n in running if n not in ours]
    else:
        names = [n for n in running if not n.startswith(prefix)]
    if not names:
        return {}
    try:
        stats = G.balloon_stats(URI, names=names)
    except G.GuestError:
        stats = {}
    return {n: stats.get(n, {}).get("current", 0) for n in names}


TURN_LOCK = "/var/tmp/mc-e2e-turn.lock"
TURN_WAIT_S = 1200    # one whole scenario of another run, and some
_turn = None          # the open lock file: held until this process exits


def take_turn(timeout: float = TURN_WAIT_S) -> None:
    """Real-guest runs on one host take turns: hold an flock for the rest of this process
    (the kernel drops it when the process ends, however it ends). Waits for another run's
    turn to end; gives up with Disturbed."""
    global _turn
    if _turn is not None:
        return
    f = open(TURN_LOCK, "w")
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _turn = f
            return
        except BlockingIOError:
            pass
        if not said:
            log(f"waiting for another real-guest run to finish (it holds {TURN_LOCK})")
            said = True
        if time.monotonic() > deadline:
            f.close()
            raise Disturbed(f"after {timeout:.0f} s another real-guest run still holds {TURN_LOCK}")
        time.sleep(1)


def wait_for_quiet_host(prefix: str, timeout: float = FOREIGN_WAIT_S, check_guests: bool = True) -> None:
    """Every memcoordd moves every guest it sees, and the host budget counts every guest,
    ours or not: a run next to another memcoordd on qemu:///system, or next to other guests,
    measures something else. Called before we boot anything, so every guest running is
    someone else's, prefixed or not (another run of these tests uses the same names). Take
    this host's turn first (other runs of these tests wait for each other), then wait for
    anyone else to go; give up with Disturbed."""
    take_turn()
    deadline = time.monotonic() + timeout
    said = None
    while True:
        why = foreign_daemons([os.getpid()])
        if check_guests:
            why += [f"guest {n} ({a // MIB} MiB)" for n, a in sorted(foreign_domains(prefix, ours=[]).items())]
        if not why:
            return
        if why != said:
            log("waiting for other users of qemu:///system to finish: " + "; ".join(why))
            said = why
        if time.monotonic() > deadline:
            raise Disturbed(f"after {timeout:.0f} s, qemu:///system is still used by: " + "; ".join(why) +
                            ". Their balloons would be moved by our memcoordd (or ours by theirs), and the "
                            "host budget counts every guest; run again when they are gone (guests "
                            f"left over by a killed run: tests/guest/guests.py down --prefix {prefix}).")
        time.sleep(2)


# ---------------------------------------------------------------------------------------------
# What the daemon understands

def daemon_knows_policy(memcoordd: str, work: str) -> bool:
    """Does this memcoordd accept Policy= in its config? It refuses unknown keys at start, so
    start it once on libvirt's test driver with `Policy=seed` and no bus: an exit that names the
    key means no; still running after 2 s means yes (then it is stopped)."""
    d = tempfile.mkdtemp(prefix="policy-probe-", dir=work)
    try:
        conf = os.path.join(d, "memcoord.conf")
        with open(conf, "w") as f:
            f.write("[Coordinator]\nPolicy=seed\n")
        p = subprocess.Popen([memcoordd, "--config", conf, "--state-dir", d, "--bus", "none",
                              "--connect", "test:///default", "--interval", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = p.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
            return True
        if "Policy" in out:
            return False
        raise RuntimeError(f"memcoordd probe (Policy=seed on test:///default) exited {p.returncode}: {out.strip()}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Processes and teardown

class _Dir:
    """What mctest.Bus/Daemon want of a temporary directory: join()."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(path, exist_ok=True)

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)


class Host:
    """libvirtd (through tests/guest/libvirt-host.sh), a private system-like dbus-daemon,
    memcoordd, our guests; and their teardown."""

    def __init__(self, work: str, kit_dir: str, build_dir: str, state_dir: str, prefix: str = PREFIX):
        """work: this run's files (daemon config, state, log); state_dir: libvirt-host.sh's
        record of whether we started libvirtd, shared by every run."""
        self.work = os.path.abspath(work)
        self.kit_dir = kit_dir
        self.build_dir = os.path.abspath(build_dir)
        self.prefix = prefix
        self.memcoordd = os.path.join(self.build_dir, "daemon", "memcoordd")
        self.state = os.path.abspath(state_dir)
        self.guests: Optional[G.Guests] = None
        self.bus = None
        self.daemon = None
        self.libvirt_started = False
        self.sockdir: Optional[str] = None
        self._down = False
        self._lock = threading.Lock()
        self._cleanups: List[Callable[[], None]] = []
        os.makedirs(self.work, exist_ok=True)
        # mctest reads these module globals when it builds the bus config and the daemon.
        mctest.SOURCE_ROOT = SOURCE_ROOT
        mctest.MEMCOORDD = self.memcoordd
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self._on_signal)

    def _on_signal(self, signum, frame):
        print(f"\n[e2e] signal {signum}: tearing down", file=sys.stderr, flush=True)
        try:
            self.teardown()
        finally:
            os._exit(128 + signum)

    def on_teardown(self, fn: Callable[[], None]) -> None:
        self._cleanups.append(fn)

    def env(self) -> Dict[str, str]:
        return dict(os.environ, MC_PREFIX=self.prefix)

    def start_libvirt(self) -> None:
        take_turn()  # before libvirtd: another run's teardown may stop the one it started
        os.makedirs(self.state, exist_ok=True)
        before = os.path.exists(os.path.join(self.state, "libvirtd.started"))
        p = subprocess.run([os.path.join(GUEST_DIR, "libvirt-host.sh"), "start", self.state],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env())
        if p.returncode != 0:
            raise RuntimeError(f"libvirt-host.sh start failed:\n{p.stdout[-3000:]}")
        self.libvirt_started = os.path.exists(os.path.join(self.state, "libvirtd.started"))
        log(p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "libvirtd answers")
        if before and self.libvirt_started:
            log("libvirtd was started by an earlier e2e run; it stays ours")

    def start_bus(self) -> str:
        # A short path of our own for the socket (sun_path has 108 bytes; build dirs can be deep).
        self.sockdir = tempfile.mkdtemp(prefix="mc-e2e-bus-", dir="/var/tmp")
        os.chmod(self.sockdir, 0o755)
        d = _Dir(self.sockdir)
        self.bus = mctest.Bus(d, system_like=True)
        return self.bus.address

    def boot(self, specs: List[dict], console_dir: str, timeout: float = 180) -> Dict[str, float]:
        """specs: [{name, schedule, autodeflate, current_mib, max_mib}]; returns ready times."""
        self.guests = G.Guests(self.kit_dir, console_dir, prefix=self.prefix)
        for s in specs:
            self.guests.add(s["name"], schedule=s.get("schedule", ""),
                            current_mib=s.get("current_mib", 512), max_mib=s.get("max_mib", 1024),
                            autodeflate=s.get("autodeflate", False), disk_mib=s.get("disk_mib", 0))
        self.guests.start()
        return self.guests.wait_ready(timeout=timeout)

    def start_daemon(self, config_text: str, extra_args: Tuple[str, ...] = ("-v",)):
        d = _Dir(self.work)
        config = d.join("memcoord.conf")
        with open(config, "w") as f:
            f.write(config_text)
        state = d.join("state")
        shutil.rmtree(state, ignore_errors=True)
        os.makedirs(state)
        self.daemon = mctest.Daemon(d, self.bus, args=("--connect", URI) + tuple(extra_args),
                                    state_dir=state, config=config, interval="1")
        self.daemon.wait_ready(timeout=60)
        return self.daemon

    def stop_daemon(self) -> Optional[int]:
        if self.daemon is None:
            return None
        status = self.daemon.stop(timeout=20)
        return status

    def teardown(self) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - teardown goes on whatever fails
                print(f"[e2e] teardown: {e}", file=sys.stderr)
        if self.daemon is not None:
            try:
                self.daemon.stop(timeout=10)
            except Exception as e:  # noqa: BLE001
                print(f"[e2e] teardown: memcoordd: {e}", file=sys.stderr)
        if self.guests is not None:
            try:
                self.guests.teardown()
            except Exception as e:  # noqa: BLE001
                print(f"[e2e] teardown: guests: {e}", file=sys.stderr)
        if self.guests is not None:
            try:  # ours only: another run may use the same prefix
                G.destroy_domains(URI, [n for n in G.running_domains(URI) if n in self.guests.guests])
            except Exception:  # noqa: BLE001 - libvirtd may be gone already
                pass
        if self.bus is not None:
            try:
                self.bus.stop()
            except Exception as e:  # noqa: BLE001
                print(f"[e2e] teardown: dbus-daemon: {e}", file=sys.stderr)
        if self.sockdir:
            shutil.rmtree(self.sockdir, ignore_errors=True)
        self._stop_libvirt()
        mctest._kill_all()

    def _stop_libvirt(self) -> None:
        """libvirt-host.sh stop: destroys the prefixed guests, kills their leftover QEMUs and
        stops libvirtd if a run of ours started it. Only when no other guest runs: it cannot
        tell our guests from those of another run with the same prefix."""
        ours = list(self.guests.guests) if self.guests is not None else []
        others = foreign_domains(self.prefix, ours=ours)
        if others:
            log("libvirt-host.sh stop skipped: other guests run (" + ", ".join(sorted(others)) + ")")
            return
        p = subprocess.run([os.path.join(GUEST_DIR, "libvirt-host.sh"), "stop", self.state],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env())
        if p.returncode != 0:
            print(f"[e2e] libvirt-host.sh stop: {p.stdout.strip()}", file=sys.stderr)

    def stray(self) -> List[str]:
        """Anything of ours still alive after teardown."""
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            argv = _proc_argv(int(d))
            if not argv:
                continue
            joined = " ".join(argv)
            ours = list(self.guests.guests) if self.guests is not None else []
            if "qemu-system" in argv[0] and any(f"guest={n}," in joined for n in ours):
                out.append(f"qemu pid {d}")
            elif argv[0] == self.memcoordd or (len(argv) > 3 and argv[3] == self.memcoordd):
                out.append(f"memcoordd pid {d}")
            elif self.sockdir and self.sockdir in joined and "dbus-daemon" in joined:
                out.append(f"dbus-daemon pid {d}")
        return out


# ---------------------------------------------------------------------------------------------
# What the daemon did: its signals, its view at every tick, its log lines with times

class Recorder:
    """Follows the daemon while it runs.

    - every BalloonChanged and TickCompleted signal (busctl monitor), with the daemon's own
      send time (the message's realtime stamp);
    - after every TickCompleted, ListDomains: the daemon's view of each guest at that tick
      (actual and unused as it read them, the target it set); a view fetched after the next
      tick had already completed is dropped;
    - the daemon's stderr, line by line, stamped when read (every 50 ms);
    - guests not ours that show up are excluded over the bus at once (SetDomainExcluded) and
      remembered: they count toward the budget, so their presence disturbs the run.
    """

    def __init__(self, bus, daemon, ours: List[str]):
        self.bus = bus
        self.daemon = daemon
        self.ours = set(ours)
        self.client = mctest.Client(bus)
        self.monitor = mctest.Monitor(bus)
        self.views: Dict[int, Tuple[float, List[dict]]] = {}  # tick -> (epoch, ListDomains)
        self.late_views = 0
        self.log_lines: List[Tuple[float, str]] = []
        self.foreign: Dict[str, float] = {}                    # name -> epoch first seen
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._follow_ticks, daemon=True),
                         threading.Thread(target=self._follow_log, daemon=True)]
        for t in self._threads:
            t.start()

    def _follow_ticks(self) -> None:
        idx = 0
        while not self._stop.is_set():
            msg = self.monitor.wait_signal("TickCompleted", since=idx, timeout=1.0)
            if not msg:
                continue
            tick = msg["payload"]["data"][0]
            idx = self._index_after(msg)
            try:
                doms = self.client.list_domains()
            except AssertionError as e:
                if not self._stop.is_set():
                    self.errors.append(f"ListDomains after tick {tick}: {e}")
                continue
            got = time.time()
            # Still this tick's view? Only if no later tick completed meanwhile.
            later = [m for m in self.monitor.signals("TickCompleted", since=idx)]
            if later:
                self.late_views += 1
                continue
            self.views[tick] = (got, doms)
            for d in doms:
                n = d["name"]
                if n not in self.ours and d["status"] != "excluded":
                    self.foreign.setdefault(n, got)
                    try:
                        self.client.call("SetDomainExcluded", f"string:{n}", "boolean:true")
                    except (AssertionError, mctest.CallError) as e:
                        self.errors.append(f"SetDomainExcluded {n}: {e}")

    def _index_after(self, msg) -> int:
        with self.monitor.cond:
            for i in range(len(self.monitor.messages) - 1, -1, -1):
                if self.monitor.messages[i] is msg:
                    return i + 1
            return len(self.monitor.messages)

    def _follow_log(self) -> None:
        path = self.daemon.log_path
        pos = 0
        buf = ""
        while True:
            stopping = self._stop.is_set()
            try:
                with open(path, errors="replace") as f:
                    f.seek(pos)
                    data = f.read()
                    pos = f.tell()
            except OSError:
                data = ""
            if data:
                now = time.time()
                buf += data
                *lines, buf = buf.split("\n")
                self.log_lines.extend((now, line) for line in lines)
            if stopping:
                if buf:
                    self.log_lines.append((time.time(), buf))
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self.monitor.stop()

    # -- results --------------------------------------------------------------------------

    def signals(self) -> List[dict]:
        """BalloonChanged and TickCompleted, in order, each with 'epoch' and 'tick' (the tick
        a BalloonChanged belongs to: the next TickCompleted)."""
        raw = [m for m in self.monitor.signals() if m.get("member") in ("BalloonChanged", "TickCompleted")]
        out = []
        pending = []
        for m in raw:
            epoch = m.get("timestamp-realtime", 0) / 1e6 or m["_received"]
            data = m["payload"]["data"]
            if m["member"] == "BalloonChanged":
                e = {"kind": "balloon", "epoch": epoch, "guest": data[1], "from_kib": data[2] // 1024,
                     "to_kib": data[3] // 1024, "reason": data[4], "tick": None}
                pending.append(e)
                out.append(e)
            else:
                tick = data[0]
                for e in pending:
                    e["tick"] = tick
                pending = []
                out.append({"kind": "tick", "epoch": epoch, "tick": tick, "host_free_kib": data[1] // 1024,
                            "managed": data[2], "changed": data[3]})
        return out


def save_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


def tail(path: str, lines: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})"


def add_host_arguments(ap) -> None:
    """The options every real-guest program takes: where the build and the output are, the
    guest kit's cache, the scratch space, and how long to wait for other users of the host."""
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kit", default=os.environ.get("MC_E2E_KIT", DEFAULT_KIT))
    ap.add_argument("--work", default=os.environ.get("MC_E2E_WORK", DEFAULT_WORK),
                    help="scratch space (libvirtd's state record)")
    ap.add_argument("--wait-foreign", type=float, default=FOREIGN_WAIT_S,
                    help="seconds to wait for other users of qemu:///system to finish")


__all__ = ["G", "mctest", "Host", "Recorder", "Skip", "Disturbed", "log", "require_host", "build_kit",
           "wait_for_quiet_host", "foreign_domains", "foreign_daemons", "save_json", "tail", "MIB", "URI",
           "daemon_knows_policy", "add_host_arguments",
           "PREFIX", "SKIP", "DEFAULT_KIT", "DEFAULT_WORK", "BALLOON_LINE", "GREW_LINE"]
