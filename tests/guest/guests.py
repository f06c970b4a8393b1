#!/usr/bin/python3
"""Boot tiny test guests on qemu:///system and tear them down.

Library:

    from guests import Guests
    with Guests(kernel_dir, console_dir) as g:
        g.add(schedule="idle:10,ramp:300:20,hold")      # -> "mc-1"
        g.add(schedule="idle", autodeflate=True)         # -> "mc-2"
        g.start()
        g.wait_ready()
        ...                                              # guests destroyed on exit

Every guest a Guests object starts is destroyed by teardown(): on leaving the
`with` block, at interpreter exit (atexit), and on SIGINT / SIGTERM, unless
keep() was called (the CLI's `up` does that so `down` can find them later).

The guests are transient libvirt domains (`virsh create`) of type 'qemu' (TCG),
booting OUTDIR/vmlinux + OUTDIR/initramfs.gz of build-guest.sh, with a virtio
balloon (stats every second, free page reporting) and the serial console
written to CONSOLE_DIR/NAME.log. The memdemand schedule goes on the kernel
command line. A guest added with disk_mib gets a sparse raw image
CONSOLE_DIR/NAME.img of that size as a virtio disk (/dev/vda in the guest),
for memdemand's cache steps; the image is removed at teardown.

Only the standard library and the `virsh` client (Debian's libvirt-clients)
are used.

CLI:
    guests.py up --count 3 --kernel-dir DIR --console-dir DIR
                 [--schedule NAME=SCHED ...] [--current-mib 512] [--max-mib 1024]
                 [--autodeflate NAME ...] [--disk NAME=MIB ...] [--prefix mc-] [--hold]
    guests.py down [--prefix mc-]
    guests.py stats [--prefix mc-]
"""

import argparse
import atexit
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from xml.sax.saxutils import escape

DEFAULT_URI = "qemu:///system"
DEFAULT_PREFIX = "mc-"
READY_LINE = "memdemand: ready"
# loglevel=4: quiet boot, yet the kernel's "Out of memory: Killed process"
# (KERN_ERR) still reaches the console. no_timer_check: under TCG on busy host
# cores the kernel's IO-APIC timer check can time out and panic the boot ("IO-APIC
# + timer doesn't work!"; seen at load 13 on 2 cores). panic=-1: a guest that
# panics anyway reboots at once, which destroys it (on_reboot), so wait_ready
# reports it instead of waiting for a `ready` that never comes.
DEFAULT_CMDLINE = "console=ttyS0 loglevel=4 mitigations=off no_timer_check panic=-1"


class GuestError(RuntimeError):
    pass


def virsh(uri: str, *args: str, timeout: float = 60, check: bool = True) -> str:
    """Run `virsh -c URI ARGS`, return stdout; raise GuestError on failure."""
    cmd = ["virsh", "-q", "-c", uri, *args]
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GuestError(f"{' '.join(cmd)}: no answer within {timeout}s") from None
    if check and p.returncode != 0:
        raise GuestError(f"{' '.join(cmd)}: {p.stderr.strip() or 'exit ' + str(p.returncode)}")
    return p.stdout


def parse_domstats(text: str) -> Dict[str, Dict[str, int]]:
    """Parse `virsh domstats` output into {domain: {field: int}}.

    Field names drop the group prefix: balloon.last-update -> "last-update".
    """
    out: Dict[str, Dict[str, int]] = {}
    cur: Optional[Dict[str, int]] = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^Domain: '(.*)'$", line)
        if m:
            cur = out.setdefault(m.group(1), {})
            continue
        if cur is None or "=" not in line:
            continue
        key, _, val = line.partition("=")
        if key.startswith("balloon."):
            key = key[len("balloon."):]
        try:
            cur[key] = int(val)
        except ValueError:
            pass
    return out


def balloon_stats(uri: str = DEFAULT_URI, names: Optional[List[str]] = None,
                  prefix: Optional[str] = None) -> Dict[str, Dict[str, int]]:
    """Balloon stats (KiB, last-update in epoch s) of running domains, one virsh call.

    With names: those domains (a missing one raises GuestError). Otherwise
    every running domain, filtered by name prefix when given.
    """
    if names:
        return parse_domstats(virsh(uri, "domstats", "--balloon", *names, timeout=30))
    stats = parse_domstats(virsh(uri, "domstats", "--balloon", "--list-running", timeout=30))
    if prefix:
        stats = {k: v for k, v in stats.items() if k.startswith(prefix)}
    return stats


def running_domains(uri: str = DEFAULT_URI, prefix: str = "") -> List[str]:
    names = virsh(uri, "list", "--name", timeout=30).split()
    return [n for n in names if n.startswith(prefix)]


def parse_schedule(schedule: str) -> List[Tuple[float, str, int, float]]:
    """Mirror of memdemand's grammar: [(start_s, kind, target_mib, secs)].

    secs is -1 for a step that lasts forever. Start times are relative to the
    guest's `memdemand: ready` line. Raises ValueError on a bad schedule.
    """
    steps = []
    t, cur = 0.0, 0

    def size(s: str) -> int:
        m = re.fullmatch(r"([+-]?)(\d+)([MmGg]?)", s)
        if not m:
            raise ValueError(f"bad size {s!r}")
        v = int(m.group(2)) * (1024 if m.group(3) in ("G", "g") else 1)
        if m.group(1):
            return max(0, cur + (v if m.group(1) == "+" else -v))
        return v

    def secs(s: str) -> float:
        if not re.fullmatch(r"\d+(\.\d+)?", s):
            raise ValueError(f"bad seconds {s!r}")
        return float(s)

    for tok in schedule.split(","):
        if not tok:
            continue
        if steps and steps[-1][3] < 0:
            raise ValueError("a step follows one that lasts forever")
        f = tok.split(":")
        kind = f[0]
        if kind in ("idle", "hold") and len(f) <= 2:
            d = secs(f[1]) if len(f) == 2 else -1.0
            steps.append((t, kind, cur, d))
        elif kind in ("ramp", "to") and len(f) == 3:
            cur = size(f[1])
            d = secs(f[2])
            steps.append((t, kind, cur, d))
        elif kind == "jump" and len(f) == 2:
            cur = size(f[1])
            d = 0.0
            steps.append((t, kind, cur, d))
        elif kind == "free" and len(f) == 1:
            cur, d = 0, 0.0
            steps.append((t, kind, cur, d))
        elif kind == "cache" and len(f) in (2, 3):
            # Page cache, not anonymous memory: what the workload holds stays as it is.
            if not re.fullmatch(r"\d+([MmGg]?)", f[1]):
                raise ValueError(f"bad cache size {f[1]!r} (no + or -: always more)")
            d = secs(f[2]) if len(f) == 3 else 0.0
            steps.append((t, kind, cur, d))
        elif kind == "uncache" and len(f) == 1:
            d = 0.0
            steps.append((t, kind, cur, d))
        else:
            raise ValueError(f"bad step {tok!r}")
        if d > 0:
            t += d
    return steps


def cache_size_mib(tok: str) -> int:
    """MiB a `cache:SIZE[:SECS]` step reads."""
    m = re.fullmatch(r"(\d+)([MmGg]?)", tok.split(":")[1])
    return int(m.group(1)) * (1024 if m.group(2) in ("G", "g") else 1)


def schedule_duration(schedule: str) -> float:
    """Seconds from `ready` to `done` (inf if the schedule never ends)."""
    steps = parse_schedule(schedule)
    if not steps:
        return float("inf")
    start, _, _, d = steps[-1]
    return float("inf") if d < 0 else start + d


def console_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no console log: {e})"
    data = data.replace("\r", "")
    return "\n".join(data.splitlines()[-lines:])


@dataclass
class Guest:
    name: str
    schedule: str = ""
    current_mib: int = 512
    max_mib: int = 1024
    autodeflate: bool = False
    free_page_reporting: bool = True
    disk_mib: int = 0                       # > 0: a sparse raw image as /dev/vda
    disk: str = ""                          # its path
    metadata: str = ""                      # XML inside the domain's <metadata>, as given
    console: str = ""
    cmdline: str = DEFAULT_CMDLINE
    started_at: Optional[float] = None      # epoch s, after `virsh create` returned
    ready_line_at: Optional[float] = None   # epoch s, `memdemand: ready` first seen
                                            # (the schedule's t=0, within a poll)
    ready_at: Optional[float] = None        # epoch s, when wait_ready saw it ready
    extra: Dict[str, str] = field(default_factory=dict)


def _proc_done(p: subprocess.Popen) -> bool:
    """Has the child exited? Safe inside a signal handler that interrupted
    p.communicate() (poll() may then find the wait lock taken)."""
    if p.returncode is not None or p.poll() is not None:
        return True
    try:
        with open(f"/proc/{p.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# Every guest started by any Guests object, for the atexit/signal teardown.
_LIVE: Dict[str, "Guests"] = {}
_LOCK = threading.RLock()
_HANDLERS_INSTALLED = False


def _teardown_all() -> None:
    with _LOCK:
        owners = list({id(g): g for g in _LIVE.values()}.values())
    for g in owners:
        g.teardown()


def _on_signal(signum, frame):
    _teardown_all()
    # Restore the default action and re-deliver, so the exit status tells the truth.
    signal.signal(signum, signal.SIG_DFL)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_teardown_all)
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            prev = signal.getsignal(s)
            # Leave a handler the program installed itself alone.
            if prev in (signal.SIG_DFL, signal.default_int_handler, None):
                signal.signal(s, _on_signal)


class Guests:
    """A set of tiny guests: define with add(), boot with start(), wait_ready()."""

    def __init__(self, kernel_dir: str, console_dir: str, uri: str = DEFAULT_URI,
                 prefix: str = DEFAULT_PREFIX, emulator: Optional[str] = None,
                 machine: str = "pc"):
        self.kernel = os.path.abspath(os.path.join(kernel_dir, "vmlinux"))
        self.initrd = os.path.abspath(os.path.join(kernel_dir, "initramfs.gz"))
        for p in (self.kernel, self.initrd):
            if not os.path.isfile(p):
                raise GuestError(f"{p} missing: run tests/guest/build-guest.sh {kernel_dir}")
        self.console_dir = os.path.abspath(console_dir)
        os.makedirs(self.console_dir, exist_ok=True)
        self.uri = uri
        self.prefix = prefix
        self.emulator = emulator
        self.machine = machine
        self.guests: Dict[str, Guest] = {}
        self.started: List[str] = []
        self._kept = False
        self._creating: List[subprocess.Popen] = []

    # -- definition -------------------------------------------------------
    def add(self, name: Optional[str] = None, schedule: str = "", current_mib: int = 512,
            max_mib: int = 1024, autodeflate: bool = False, free_page_reporting: bool = True,
            cmdline: str = DEFAULT_CMDLINE, disk_mib: int = 0, metadata: str = "") -> str:
        if name is None:
            i = len(self.guests) + 1
            while f"{self.prefix}{i}" in self.guests:
                i += 1
            name = f"{self.prefix}{i}"
        elif not name.startswith(self.prefix):
            name = self.prefix + name
        if name in self.guests:
            raise GuestError(f"guest {name} defined twice")
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
            raise GuestError(f"bad guest name {name!r}")
        if schedule:
            try:
                parse_schedule(schedule)  # fail early, not in the guest
            except ValueError as e:
                raise GuestError(f"{name}: schedule {schedule!r}: {e}") from None
            if re.search(r"\s|\"", schedule):
                raise GuestError(f"schedule {schedule!r} must not contain blanks or quotes")
        if current_mib > max_mib:
            raise GuestError(f"{name}: current {current_mib} MiB > max {max_mib} MiB")
        if disk_mib < 0:
            raise GuestError(f"{name}: disk size {disk_mib} MiB")
        g = Guest(name=name, schedule=schedule, current_mib=current_mib, max_mib=max_mib,
                  autodeflate=autodeflate, free_page_reporting=free_page_reporting,
                  console=os.path.join(self.console_dir, f"{name}.log"), cmdline=cmdline,
                  disk_mib=disk_mib, metadata=metadata,
                  disk=os.path.join(self.console_dir, f"{name}.img") if disk_mib else "")
        self.guests[name] = g
        return name

    def domain_xml(self, g: Guest) -> str:
        cmdline = g.cmdline
        if g.current_mib < g.max_mib:
            # memdemand's timeline starts once the balloon is down to current: on a busy host
            # that inflate takes tens of seconds. (Autodeflate keeps MemTotal at max; memdemand
            # then counts the balloon's pages from /proc/vmstat.)
            cmdline += f" memdemand.settle={g.current_mib}"
            if g.autodeflate:
                cmdline += " memdemand.autodeflate=1"
        if g.schedule:
            cmdline += f" memdemand={g.schedule}"
        emulator = f"<emulator>{escape(self.emulator)}</emulator>" if self.emulator else ""
        onoff = lambda b: "on" if b else "off"  # noqa: E731
        disk = ""
        if g.disk_mib:
            disk = f"""<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{escape(g.disk)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
        metadata = f"<metadata>{g.metadata}</metadata>" if g.metadata else ""
        return f"""<domain type='qemu'>
  <name>{escape(g.name)}</name>
  {metadata}
  <memory unit='MiB'>{g.max_mib}</memory>
  <currentMemory unit='MiB'>{g.current_mib}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{escape(self.machine)}'>hvm</type>
    <kernel>{escape(self.kernel)}</kernel>
    <initrd>{escape(self.initrd)}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {emulator}
    {disk}
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{escape(g.console)}'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{escape(g.console)}'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='virtio' autodeflate='{onoff(g.autodeflate)}' freePageReporting='{onoff(g.free_page_reporting)}'>
      <stats period='1'/>
    </memballoon>
  </devices>
</domain>
"""

    # -- lifecycle --------------------------------------------------------
    def start(self, names: Optional[List[str]] = None) -> None:
        """Create the guests (all defined ones not yet started, or `names`)."""
        _install_handlers()
        todo = names or [n for n in self.guests if n not in self.started]
        existing = set(running_domains(self.uri))
        for n in todo:
            if n in existing:
                raise GuestError(f"a domain named {n} is already running "
                                 f"(left over? `guests.py down --prefix {self.prefix}`)")
        procs = []
        for n in todo:
            g = self.guests[n]
            try:
                os.unlink(g.console)          # no stale `ready` from an earlier run
            except FileNotFoundError:
                pass
            if g.disk_mib:
                # Sparse: reading its holes fills the guest's page cache, not the host's disk.
                with open(g.disk, "wb") as f:
                    f.truncate(g.disk_mib * 1024 * 1024)
            xml_path = os.path.join(self.console_dir, f"{n}.xml")
            with open(xml_path, "w") as f:
                f.write(self.domain_xml(g))
            with _LOCK:
                # Registered before create: a signal during it still tears down.
                self.started.append(n)
                _LIVE[n] = self
        # All at once: each create takes ~1 s, mostly waiting on QEMU.
        for n in todo:
            xml_path = os.path.join(self.console_dir, f"{n}.xml")
            p = subprocess.Popen(["virsh", "-q", "-c", self.uri, "create", xml_path],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            procs.append((n, p))
            self._creating.append(p)
        errors = []
        for n, p in procs:
            try:
                _, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                err = "no answer within 120s"
            if p.returncode == 0:
                self.guests[n].started_at = time.time()
            else:
                errors.append(f"virsh create {n}: {err.strip()}")
        self._creating.clear()
        if errors:
            # The others are still torn down by teardown() / atexit.
            raise GuestError("; ".join(errors))

    def wait_ready(self, timeout: float = 180, names: Optional[List[str]] = None,
                   poll: float = 0.2, settle: bool = True) -> Dict[str, float]:
        """Wait until each guest printed `memdemand: ready` and its balloon stats flow.

        With settle, also wait until balloon.current has come down to the
        guest's current_mib (QEMU starts at max_mib; the balloon inflates once
        the driver loads), so every test starts from the configured size. Turn
        it off for a guest whose schedule grows at once past current_mib with
        autodeflate on.

        Returns {name: seconds from start to ready}. Raises GuestError naming the
        guests that are not ready, with their console tails, after `timeout`.
        """
        names = names or list(self.started)
        pending = {n for n in names if self.guests[n].ready_at is None}
        deadline = time.monotonic() + timeout
        seen_line = set()
        last_stats: Dict[str, Dict[str, int]] = {}
        next_alive_check = time.monotonic() + 2
        while pending:
            for n in list(pending):
                if n not in seen_line:
                    try:
                        with open(self.guests[n].console, "rb") as f:
                            if READY_LINE.encode() in f.read():
                                seen_line.add(n)
                                self.guests[n].ready_line_at = time.time()
                    except FileNotFoundError:
                        pass
            want = [n for n in pending if n in seen_line]
            if want:
                try:
                    stats = balloon_stats(self.uri, names=want)
                except GuestError:
                    stats = {}
                now = time.time()
                for n in want:
                    st = stats.get(n, {})
                    if "unused" not in st:
                        continue
                    if settle and st.get("current", 0) > self.guests[n].current_mib * 1024 + 1024:
                        continue
                    self.guests[n].ready_at = now
                    pending.discard(n)
                last_stats.update(stats)
            if not pending:
                break
            if time.monotonic() > next_alive_check:
                # A guest that is gone will never be ready: say so now.
                next_alive_check = time.monotonic() + 2
                dead = pending - set(running_domains(self.uri))
                if dead:
                    raise GuestError("guests stopped before they were ready: " + ", ".join(
                        f"{n}; console {self.guests[n].console} ends:\n"
                        f"{console_tail(self.guests[n].console)}" for n in sorted(dead)))
            if time.monotonic() > deadline:
                alive = set(running_domains(self.uri))
                parts = []
                for n in sorted(pending):
                    st = last_stats.get(n, {})
                    if n not in alive:
                        why = "domain not running"
                    elif n not in seen_line:
                        why = f"no '{READY_LINE}' on the console"
                    elif "unused" not in st:
                        why = "no balloon.unused in domstats (balloon driver or stats period?)"
                    else:
                        why = (f"balloon not settled: current={st.get('current')} KiB, "
                               f"target={self.guests[n].current_mib * 1024} KiB")
                    parts.append(f"--- {n}: {why}; console {self.guests[n].console} ends:\n"
                                 f"{console_tail(self.guests[n].console)}")
                raise GuestError(f"guests not ready after {timeout:.0f}s: "
                                 f"{', '.join(sorted(pending))}\n" + "\n".join(parts))
            time.sleep(poll)
        return {n: self.guests[n].ready_at - self.guests[n].started_at for n in names}

    def setmem(self, name: str, mib: int) -> None:
        """Set the balloon target of a running guest (live)."""
        virsh(self.uri, "setmem", name, f"{int(mib)}M", "--live", timeout=30)

    def stats(self) -> Dict[str, Dict[str, int]]:
        return balloon_stats(self.uri, names=[n for n in self.started]) if self.started else {}

    def console_text(self, name: str) -> str:
        with open(self.guests[name].console, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\r", "")

    def keep(self) -> None:
        """Leave the started guests running when this object goes away."""
        with _LOCK:
            self._kept = True
            for n in self.started:
                _LIVE.pop(n, None)

    def teardown(self) -> None:
        """Destroy every guest this object started (idempotent)."""
        with _LOCK:
            if self._kept:
                return
            names = list(self.started)
            self.started.clear()
            for n in names:
                _LIVE.pop(n, None)
        # A signal may land while `virsh create` runs: let those finish first,
        # or the domain would appear after its destroy.
        deadline = time.monotonic() + 60
        for p in list(self._creating):
            while not _proc_done(p) and time.monotonic() < deadline:
                time.sleep(0.05)
        destroy_domains(self.uri, names)
        for n in names:
            if self.guests[n].disk:
                try:
                    os.unlink(self.guests[n].disk)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False


def destroy_domains(uri: str, names: List[str], timeout: float = 60) -> None:
    """`virsh destroy` the domains, all at once (each takes ~1 s under TCG)."""
    procs = []
    for n in names:
        try:
            procs.append((n, subprocess.Popen(["virsh", "-q", "-c", uri, "destroy", n],
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE, text=True)))
        except OSError as e:
            print(f"guests: destroy {n}: {e}", file=sys.stderr)
    deadline = time.monotonic() + timeout
    for n, p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            print(f"guests: destroy {n}: no answer within {timeout}s", file=sys.stderr)
            continue
        gone = ("not found", "not running", "failed to get domain", "no domain with matching")
        if p.returncode != 0 and not any(x in err for x in gone):
            print(f"guests: destroy {n}: {err.strip()}", file=sys.stderr)


def down(uri: str = DEFAULT_URI, prefix: str = DEFAULT_PREFIX) -> List[str]:
    """Destroy every running domain whose name starts with prefix."""
    if not prefix:
        raise GuestError("refusing an empty prefix")
    names = running_domains(uri, prefix)
    destroy_domains(uri, names)
    return names


def _cli(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="boot / tear down tiny memcoord test guests")
    ap.add_argument("--uri", default=DEFAULT_URI)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="boot guests and wait until they are ready")
    up.add_argument("--count", type=int, default=3)
    up.add_argument("--kernel-dir", required=True, help="OUTDIR of build-guest.sh")
    up.add_argument("--console-dir", required=True, help="where NAME.log consoles go")
    up.add_argument("--prefix", default=DEFAULT_PREFIX)
    up.add_argument("--schedule", action="append", default=[], metavar="NAME=SCHED",
                    help="memdemand schedule of guest NAME (mc-2 or just 2); "
                         "NAME '*' sets the default for all")
    up.add_argument("--current-mib", type=int, default=512)
    up.add_argument("--max-mib", type=int, default=1024)
    up.add_argument("--autodeflate", action="append", default=[], metavar="NAME",
                    help="turn on autodeflate for guest NAME ('*' for all)")
    up.add_argument("--disk", action="append", default=[], metavar="NAME=MIB",
                    help="give guest NAME a sparse raw disk of MIB MiB as /dev/vda")
    up.add_argument("--timeout", type=float, default=180)
    up.add_argument("--no-settle", action="store_true",
                    help="do not wait for the balloon to reach --current-mib")
    up.add_argument("--hold", action="store_true",
                    help="stay in the foreground; destroy the guests on SIGINT/SIGTERM")
    dn = sub.add_parser("down", help="destroy every guest whose name has the prefix")
    dn.add_argument("--prefix", default=DEFAULT_PREFIX)
    st = sub.add_parser("stats", help="print balloon stats of the prefixed guests")
    st.add_argument("--prefix", default=DEFAULT_PREFIX)
    a = ap.parse_args(argv)

    try:
        if a.cmd == "down":
            for n in down(a.uri, a.prefix):
                print(f"destroyed {n}")
            return 0
        if a.cmd == "stats":
            for n, s in sorted(balloon_stats(a.uri, prefix=a.prefix).items()):
                print(n, " ".join(f"{k}={v}" for k, v in sorted(s.items())))
            return 0

        def full(n: str) -> str:
            return n if n == "*" or n.startswith(a.prefix) else a.prefix + n

        scheds: Dict[str, str] = {}
        for item in a.schedule:
            n, sep, s = item.partition("=")
            if not sep:
                ap.error(f"--schedule wants NAME=SCHED, got {item!r}")
            scheds[full(n)] = s
        deflate = {full(n) for n in a.autodeflate}
        disks: Dict[str, int] = {}
        for item in a.disk:
            n, sep, mib = item.partition("=")
            if not sep or not mib.isdigit():
                ap.error(f"--disk wants NAME=MIB, got {item!r}")
            disks[full(n)] = int(mib)
        g = Guests(a.kernel_dir, a.console_dir, uri=a.uri, prefix=a.prefix)
        for i in range(1, a.count + 1):
            n = f"{a.prefix}{i}"
            g.add(n, schedule=scheds.get(n, scheds.get("*", "")), current_mib=a.current_mib,
                  max_mib=a.max_mib, autodeflate=(n in deflate or "*" in deflate),
                  disk_mib=disks.get(n, disks.get("*", 0)))
        unknown = set(scheds) - set(g.guests) - {"*"}
        unknown |= deflate - set(g.guests) - {"*"}
        unknown |= set(disks) - set(g.guests) - {"*"}
        if unknown:
            ap.error(f"no such guest: {', '.join(sorted(unknown))}")
        t0 = time.monotonic()
        g.start()
        t_create = time.monotonic() - t0
        ready = g.wait_ready(timeout=a.timeout, settle=not a.no_settle)
        print(f"created {len(g.started)} guests in {t_create:.1f}s")
        for n in g.started:
            gg = g.guests[n]
            print(f"{n} ready in {ready[n]:.1f}s console={gg.console} "
                  f"autodeflate={'on' if gg.autodeflate else 'off'} schedule={gg.schedule or '-'}")
        sys.stdout.flush()
        if a.hold:
            print("holding; SIGINT or SIGTERM destroys the guests", flush=True)
            while True:
                time.sleep(3600)
        g.keep()
        return 0
    except GuestError as e:
        print(f"guests: error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"guests: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_cli())
