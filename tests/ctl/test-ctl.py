#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
memcoordctl against a real memcoordd on a private bus.

Starts its own dbus-daemon (a session-type bus listening on a socket in a temporary directory,
open to every local user) and memcoordd on libvirt's test driver, then runs every verb of
memcoordctl and checks what it prints and what it does against what the daemon reports
through busctl. Also: errors without a bus, without the daemon, with an unknown guest, with
bad sizes and from an unprivileged caller (nobody, through setpriv); top in a pseudo-terminal
and in tmux; the bash completion; the man pages.

Output is TAP. Usage:
  test-ctl.py --memcoordd PATH --memcoordctl PATH --node-xml PATH --completion PATH
              --man PAGE...
"""

import argparse
import ctypes
import fcntl
import json
import os
import pty
import queue
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time

MiB = 1024 * 1024
GiB = 1024 * MiB
UINT64_MAX = 2**64 - 1
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")
GUESTS = ["vm-noballoon", "vm1", "vm2", "vm3"]
DOMAIN_FIELDS = [
    "object", "name", "uuid", "status", "actual", "target", "unused", "available", "usable",
    "maximum", "min", "max", "stats_age", "weight", "last_change", "last_reason",
]
VERBS = ["status", "domains", "set-threshold", "set-interval", "set-budget", "pause", "resume",
         "set-limits", "exclude", "include", "reload", "monitor", "top"]
OPTIONS = ["--help", "--version", "--json", "--no-legend", "--host", "-H", "--system", "--user",
           "--min", "--max", "--weight", "--persistent", "--iterations", "-n"]


# ---- TAP ----

class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {name}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} - {name}", flush=True)
            if diag is not None:
                for line in str(diag).splitlines()[:60]:
                    print(f"# {line}", flush=True)
        return cond

    def skip(self, name, why):
        self.n += 1
        print(f"ok {self.n} - {name} # SKIP {why}", flush=True)

    def diag(self, msg):
        for line in str(msg).splitlines():
            print(f"# {line}", flush=True)

    def done(self):
        print(f"1..{self.n}", flush=True)
        return 1 if self.failed else 0


tap = Tap()


# ---- processes ----

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # A killed harness must not leave a bus or a daemon behind.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Result:
    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"

    @property
    def err_lines(self):
        return [l for l in self.err.splitlines() if l.strip()]

    def clean(self):
        """No sanitizer report and no crash."""
        return self.rc >= 0 and not any(m in self.err for m in SANITIZER_MARKS)


def run(argv, env=None, timeout=30, preexec=None):
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, preexec_fn=preexec or _die_with_parent)
    return Result(p.returncode, p.stdout, p.stderr)


class Env:
    def __init__(self, args):
        self.args = args
        self.ctl = args.memcoordctl
        self.tmp = tempfile.mkdtemp(prefix="memcoord-ctl-")
        os.chmod(self.tmp, 0o755)
        self.socket = os.path.join(self.tmp, "bus")
        self.address = f"unix:path={self.socket}"
        self.state_dir = os.path.join(self.tmp, "state")
        self.config = os.path.join(self.tmp, "memcoord.conf")
        self.bus = None
        self.daemon = None
        self.children = []
        with open(self.config, "w") as f:
            f.write("# memcoordctl tests\n")

    # Environments for the client: on our bus, or on no bus at all.
    def env(self, **extra):
        e = dict(os.environ)
        e["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        e.pop("DBUS_SESSION_BUS_ADDRESS", None)
        e.update(extra)
        return e

    def env_nobus(self):
        return self.env(DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={self.tmp}/no-such-bus")

    def start_bus(self):
        conf = os.path.join(self.tmp, "bus.conf")
        with open(conf, "w") as f:
            f.write(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={self.socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
""")
        self.bus = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={conf}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.bus.poll() is not None:
                raise RuntimeError("dbus-daemon did not start")
            time.sleep(0.02)
        # nobody must reach the bus too.
        os.chmod(self.socket, 0o777)

    def start_daemon(self, wait=True):
        self.daemon_log = open(os.path.join(self.tmp, "memcoordd.log"), "a")
        self.daemon = subprocess.Popen(
            [self.args.memcoordd, "--bus", "system", "--connect", f"test://{self.args.node_xml}",
             "--interval", "0.2", "--state-dir", self.state_dir, "--config", self.config],
            env=self.env(), stdout=self.daemon_log, stderr=self.daemon_log, preexec_fn=_die_with_parent)
        if wait:
            self.wait_for_daemon()

    def wait_for_daemon(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"memcoordd exited with {self.daemon.returncode}: {self.daemon_output()}")
            r = self.busctl("call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                            "NameHasOwner", "s", "org.memcoord", check=False)
            if r and r["data"][0]:
                try:
                    if int(self.prop("TickCount")) >= 2 and len(self.list_domains()) == len(GUESTS):
                        return
                except (RuntimeError, KeyError, ValueError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"memcoordd did not come up: {self.daemon_output()}")

    def daemon_output(self):
        try:
            with open(os.path.join(self.tmp, "memcoordd.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop_daemon(self):
        """SIGTERM; every memcoordd must then exit 0 with no sanitizer report in its log (a leak
        shows only at exit)."""
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        status = self.daemon.returncode
        self.daemon_log.flush()
        with open(os.path.join(self.tmp, "memcoordd.log"), errors="replace") as f:
            log = f.read()
        reports = [line for line in log.splitlines() if any(m in line for m in SANITIZER_MARKS)]
        tap.ok(status == 0 and not reports, "memcoordd stops with exit 0 and no sanitizer report",
               f"exit status {status}\n" + "\n".join(reports[:20]) + "\n" + log[-3000:])
        self.daemon = None

    def cleanup(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.stop_daemon()
        if self.bus and self.bus.poll() is None:
            self.bus.terminate()
            try:
                self.bus.wait(10)
            except subprocess.TimeoutExpired:
                self.bus.kill()
                self.bus.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- ground truth, through busctl ----

    def busctl(self, *args, check=True):
        p = subprocess.run(["busctl", f"--address={self.address}", "--json=short", *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
        if p.returncode != 0:
            if check:
                raise RuntimeError(f"busctl {' '.join(args)}: {p.stderr.strip()}")
            return None
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def manager_call(self, method, *args):
        return self.busctl("call", "org.memcoord", "/org/memcoord", "org.memcoord1.Manager", method, *args)

    def props(self):
        r = self.busctl("call", "org.memcoord", "/org/memcoord", "org.freedesktop.DBus.Properties", "GetAll",
                        "s", "org.memcoord1.Manager")
        return {k: v["data"] for k, v in r["data"][0].items()}

    def prop(self, name):
        return self.busctl("get-property", "org.memcoord", "/org/memcoord", "org.memcoord1.Manager", name)["data"]

    def list_domains(self):
        r = self.manager_call("ListDomains")
        return {d[1]: dict(zip(DOMAIN_FIELDS, d)) for d in r["data"][0]}

    def domain_prop(self, name, prop):
        obj = self.list_domains()[name]["object"]
        return self.busctl("get-property", "org.memcoord", obj, "org.memcoord1.Domain", prop)["data"]

    def wait_ticks(self, n=2):
        start = int(self.prop("TickCount"))
        deadline = time.monotonic() + 10
        while int(self.prop("TickCount")) < start + n:
            if time.monotonic() > deadline:
                raise RuntimeError("memcoordd stopped ticking")
            time.sleep(0.05)

    def wait_until(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            time.sleep(0.05)
        return pred()

    def pause(self):
        self.manager_call("Pause")
        self.wait_ticks(2)  # a target set just before is reached in the next tick

    def resume(self):
        self.manager_call("Resume")

    # ---- the client ----

    def ctl_run(self, *args, env=None, timeout=30):
        return run([self.ctl, *args], env=env or self.env(), timeout=timeout)


# ---- parsing what memcoordctl prints ----

SIZE_RE = re.compile(r"^(\d+(?:\.(\d+))?)([KMGTPE]?)$")


def size_matches(text, true_bytes):
    """A human size as printed ("1.5G", "512M", "980") against the exact figure."""
    m = SIZE_RE.match(text)
    if not m:
        return False
    unit = 1024 ** ("KMGTPE".index(m.group(3)) + 1) if m.group(3) else 1
    value = float(m.group(1)) * unit
    if unit == 1:
        return int(float(m.group(1))) == true_bytes
    tol = (0.05 if m.group(2) else 0.5) * unit * 1.001
    return abs(value - true_bytes) <= tol


def parse_size(text):
    m = SIZE_RE.match(text)
    if not m:
        return -1
    return float(m.group(1)) * (1024 ** ("KMGTPE".index(m.group(3)) + 1) if m.group(3) else 1)


def expect_size_cell(cell, d, value, is_stat):
    """What a size cell must show for a guest: "-" when the figure is not known."""
    unknown = (is_stat and d["status"] == "no-balloon") or (value == 0 and d["status"] != "managed")
    return cell == "-" if unknown else size_matches(cell, value)


def parse_table(text, legend=True):
    lines = [l for l in text.splitlines() if l.strip()]
    header = None
    if legend:
        header = lines[0].split()
        lines = lines[1:]
    rows = {}
    for l in lines:
        f = l.split(None, 8)
        rows[f[0]] = f
    return header, rows


def check_last_change(cell, d, now_usec):
    if d["last_change"] == 0:
        return cell == "-"
    m = re.match(r"^(\S+) (\d+)(s|min|h|d) ago$", cell)
    if not m or m.group(1) != d["last_reason"]:
        return False
    age = (now_usec - d["last_change"]) / 1e6
    per = {"s": 1, "min": 60, "h": 3600, "d": 86400}[m.group(3)]
    return abs(int(m.group(2)) - age / per) <= 3


def check_table_rows(rows, domains, now_usec):
    problems = []
    if sorted(rows) != sorted(domains):
        problems.append(f"guests {sorted(rows)} != {sorted(domains)}")
        return problems
    for name, d in domains.items():
        f = rows[name]
        if len(f) != 9:
            problems.append(f"{name}: {f}")
            continue
        checks = [
            ("status", f[1] == d["status"]),
            ("actual", expect_size_cell(f[2], d, d["actual"], False)),
            ("target", expect_size_cell(f[3], d, d["target"], False)),
            ("unused", expect_size_cell(f[4], d, d["unused"], True)),
            ("usable", expect_size_cell(f[5], d, d["usable"], True)),
            ("min", size_matches(f[6], d["min"])),
            ("max", expect_size_cell(f[7], d, d["max"], False)),
            ("last change", check_last_change(f[8], d, now_usec)),
        ]
        for what, good in checks:
            if not good:
                problems.append(f"{name}: {what}: row {f} vs {d}")
    return problems


def domain_json_matches(j, d):
    expect = {
        "name": d["name"], "uuid": d["uuid"], "object": d["object"], "status": d["status"],
        "actual_bytes": d["actual"], "target_bytes": d["target"], "unused_bytes": d["unused"],
        "available_bytes": d["available"], "usable_bytes": d["usable"], "maximum_bytes": d["maximum"],
        "min_bytes": d["min"], "max_bytes": d["max"], "weight": d["weight"],
        "stats_age_usec": None if d["stats_age"] == UINT64_MAX else d["stats_age"],
        "last_change_usec": d["last_change"] or None,
        "last_change_reason": d["last_reason"] if d["last_change"] else None,
    }
    return j == expect, expect


def one_line_error(r, *needles):
    lines = r.err_lines
    return (r.rc == 1 and r.clean() and len(lines) == 1 and lines[0].startswith("memcoordctl: ")
            and all(n.lower() in lines[0].lower() for n in needles) and r.out == "")


# ---- line reader for monitor ----

class LineReader:
    def __init__(self, proc):
        self.proc = proc
        self.q = queue.Queue()
        self.lines = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def expect(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                return None
            self.lines.append(line)
            if pred(line):
                return line


def start_monitor(env, *args):
    p = subprocess.Popen([env.ctl, *args, "monitor"], env=env.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
    env.children.append(p)
    return p, LineReader(p)


def stop(p, sig=signal.SIGINT, timeout=10):
    p.send_signal(sig)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None, ""
    return rc, p.stderr.read()


# ---- the tests ----

def test_static(env, args):
    r = env.ctl_run("--help", env=env.env_nobus())
    tap.ok(r.rc == 0 and r.clean(), "--help exits 0", r)
    tap.ok(all(re.search(rf"^  {re.escape(v)}\b", r.out, re.M) for v in VERBS), "--help lists every verb", r.out)
    tap.ok(all(o in r.out for o in OPTIONS), "--help lists every option", r.out)

    r = env.ctl_run("--version", env=env.env_nobus())
    tap.ok(r.rc == 0 and re.fullmatch(r"memcoordctl \S+\n", r.out) is not None, "--version", r)

    r = env.ctl_run("frobnicate", env=env.env_nobus())
    tap.ok(one_line_error(r, "unknown verb", "frobnicate"), "an unknown verb is one line and exit 1", r)
    r = env.ctl_run("--frob", env=env.env_nobus())
    tap.ok(one_line_error(r, "unknown option", "--frob"), "an unknown option is one line and exit 1", r)
    r = env.ctl_run("set-threshold", "domain", env=env.env_nobus())
    tap.ok(one_line_error(r, "set-threshold"), "a missing argument is one line and exit 1", r)
    r = env.ctl_run("status", "--min", "1G", env=env.env_nobus())
    tap.ok(one_line_error(r, "--min"), "--min is refused outside set-limits", r)

    # Bad values are refused before any bus is involved, naming the argument.
    bad = [
        (["set-threshold", "domain", "12Q"], ["domain threshold", "'12Q'"]),
        (["set-threshold", "host", "--", "-5M"], ["host threshold", "'-5M'"]),
        (["set-threshold", "host", "-5M"], ["'-5M'", "negative"]),
        (["set-threshold", "host", "1e3"], ["host threshold", "'1e3'"]),
        (["set-threshold", "disk", "100M"], ["'disk'", "domain", "host"]),
        (["set-budget", "lots"], ["host budget", "'lots'"]),
        (["set-budget", "0.5"], ["host budget", "'0.5'"]),
        (["set-budget", "99999999999T"], ["host budget", "too large"]),
        (["set-interval", "soon"], ["interval", "'soon'"]),
        (["set-interval", "--", "-1"], ["interval", "'-1'"]),
        (["set-interval", "inf"], ["interval", "'inf'"]),
        (["set-limits", "vm1", "--min", "abc"], ["--min", "'abc'"]),
        (["set-limits", "vm1", "--max", "1.5.5G"], ["--max", "'1.5.5G'"]),
        (["set-limits", "vm1", "--weight", "heavy"], ["--weight", "'heavy'"]),
        (["set-limits", "vm1", "--weight", "20000"], ["--weight", "'20000'"]),
        (["set-limits", "vm1", "--min", "2G", "--max", "1G"], ["--min", "--max"]),
        (["top", "-n", "0"], ["--iterations", "'0'"]),
    ]
    for argv, needles in bad:
        r = env.ctl_run(*argv, env=env.env_nobus())
        tap.ok(one_line_error(r, *needles), f"bad value refused with its name: {' '.join(argv)}", r)

    for verb in (["status"], ["domains"], ["pause"], ["monitor"], ["top", "-n", "1"]):
        r = env.ctl_run(*verb, env=env.env_nobus())
        tap.ok(one_line_error(r, "failed to connect to the system bus"), f"no bus: {' '.join(verb)}", r)


def test_man(args):
    for page in args.man:
        name = os.path.basename(page)
        r = run(["man", "-l", page], env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
        tap.ok(r.rc == 0 and "NAME" in r.out and "SEE ALSO" in r.out, f"man -l {name} renders", r)
        g = run(["groff", "-man", "-Tutf8", "-ww", "-z", page])
        tap.ok(g.rc == 0 and g.err == "", f"{name}: groff has no warnings", g)
        if name == "memcoordctl.1":
            text = re.sub(r".\x08", "", r.out).replace("\u2010", "-")
            missing = [w for w in VERBS + OPTIONS if w not in text]
            tap.ok(not missing, "memcoordctl(1) documents every verb and option", missing)
            tap.ok("EXIT STATUS" in text and "JSON" in text, "memcoordctl(1) documents exit status and JSON")
        if name == "memcoord.conf.5":
            text = re.sub(r".\x08", "", r.out)
            keys = ["IntervalSec", "DomainThreshold", "HostThreshold", "HostBudget", "DefaultMin", "DeadBand",
                    "ClaimFraction", "GrantFactor", "DryRun", "URI", "Min", "Max", "Weight", "Exclude"]
            missing = [k for k in keys if k + "=" not in text]
            tap.ok(not missing, "memcoord.conf(5) documents every key", missing)


def complete(env, words, bus_env=None):
    """Runs the completion function for words (the last one being completed)."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); '
              '_memcoordctl; printf "%s\\n" "${COMPREPLY[@]}"')
    r = run(["bash", "-c", script, "bash", env.args.completion, env.ctl, *words], env=bus_env or env.env())
    return sorted(l for l in r.out.splitlines() if l)


def test_completion_static(env):
    got = complete(env, [""], env.env_nobus())
    tap.ok(got == sorted(VERBS), "completion: the verbs", got)
    got = complete(env, ["set-"], env.env_nobus())
    tap.ok(got == sorted(v for v in VERBS if v.startswith("set-")), "completion: verbs by prefix", got)
    got = complete(env, ["--"], env.env_nobus())
    tap.ok({"--help", "--version", "--json", "--no-legend", "--host", "--system", "--user"} <= set(got)
           and "--min" not in got, "completion: global options", got)
    got = complete(env, ["set-limits", "vm1", "--"], env.env_nobus())
    tap.ok({"--min", "--max", "--weight"} <= set(got), "completion: set-limits options", got)
    got = complete(env, ["set-threshold", ""], env.env_nobus())
    tap.ok(got == ["domain", "host"], "completion: threshold kinds", got)
    got = complete(env, ["exclude", ""], env.env_nobus())
    tap.ok(got == [], "completion: no guests and no noise without a bus", got)
    got = complete(env, ["-H", ".h"], env.env_nobus())
    tap.ok(got == [".host"], "completion: -H offers .host", got)
    home = os.path.join(env.tmp, "home")
    os.makedirs(os.path.join(home, ".ssh"), exist_ok=True)
    with open(os.path.join(home, ".ssh", "config"), "w") as f:
        f.write("Host kvm-alpha kvm-beta\n  Port 2222\nHost *.example\n  User admin\n")
    got = complete(env, ["-H", "kvm-"], env.env_nobus() | {"HOME": home})
    tap.ok(got == ["kvm-alpha", "kvm-beta"], "completion: -H offers the aliases of ~/.ssh/config", got)


def test_no_daemon(env):
    cases = [
        ["status"], ["domains"], ["set-threshold", "domain", "100M"], ["set-interval", "1"], ["set-budget", "none"],
        ["pause"], ["resume"], ["set-limits", "vm1", "--min", "300M"], ["exclude", "vm1"], ["include", "vm1"],
        ["reload"], ["monitor"], ["top", "-n", "1"], ["--json", "status"],
    ]
    for argv in cases:
        r = env.ctl_run(*argv, timeout=30)
        tap.ok(one_line_error(r, "memcoordd is not running"), f"daemon not running: {' '.join(argv)}", r)


def test_status(env):
    r = env.ctl_run()
    p = env.props()
    tap.ok(r.rc == 0 and r.clean() and r.err == "", "status is the default verb", r)
    head = {}
    for line in r.out.split("\n\n")[0].splitlines():
        k, _, v = line.partition(":")
        head[k.strip()] = v.strip()
    tap.ok(head.get("State") == "running" and head.get("Policy") == p["Policy"], "status: state and policy", head)
    m = re.fullmatch(r"([\d.]+)s", head.get("Interval", ""))
    tap.ok(m is not None and abs(float(m.group(1)) * 1e6 - p["IntervalUSec"]) < 1, "status: interval", head)
    m = re.fullmatch(r"domain (\S+), host (\S+)", head.get("Thresholds", ""))
    tap.ok(m is not None and size_matches(m.group(1), p["DomainThresholdBytes"])
           and size_matches(m.group(2), p["HostThresholdBytes"]), "status: thresholds", head)
    m = re.fullmatch(r"total (\S+), free (\S+), budget (\S+)", head.get("Host", ""))
    tap.ok(m is not None and size_matches(m.group(1), p["HostTotalBytes"])
           and 0 < parse_size(m.group(2)) <= p["HostTotalBytes"] * 1.01
           and m.group(3) == "none", "status: host total, free and budget", head)
    tap.ok(head.get("Libvirt") == p["LibvirtURI"], "status: libvirt URI", head)

    # Frozen figures: the table must say exactly what the daemon says.
    env.pause()
    r = env.ctl_run("status")
    doms = env.list_domains()
    p = env.props()
    now = time.time() * 1e6
    top_part, _, table = r.out.partition("\n\n")
    tap.ok("State:      paused" in top_part, "status: paused state", r.out)
    m = re.search(r"free (\S+),", top_part)
    tap.ok(m is not None and abs(parse_size(m.group(1)) - p["HostFreeBytes"]) < 0.05 * p["HostTotalBytes"],
           "status: host free close to the daemon's", (top_part, p["HostFreeBytes"]))
    header, rows = parse_table(table)
    tap.ok(header == ["NAME", "STATUS", "ACTUAL", "TARGET", "UNUSED", "USABLE", "MIN", "MAX", "LAST", "CHANGE"],
           "status: table columns", header)
    problems = check_table_rows(rows, doms, now)
    tap.ok(not problems, "status: one row per guest, as the daemon reports it", "\n".join(problems) + "\n" + r.out)

    r = env.ctl_run("--json", "status")
    try:
        j = json.loads(r.out)
    except ValueError as e:
        j = None
        tap.diag(f"{e}: {r.out}")
    tap.ok(r.rc == 0 and isinstance(j, dict), "status --json is valid JSON", r)
    if isinstance(j, dict):
        p = env.props()
        expect = {
            "version": p["Version"], "state": p["State"], "policy": p["Policy"],
            "interval_usec": p["IntervalUSec"], "domain_threshold_bytes": p["DomainThresholdBytes"],
            "host_threshold_bytes": p["HostThresholdBytes"], "host_budget_bytes": p["HostBudgetBytes"],
            "dry_run": p["DryRun"], "libvirt_uri": p["LibvirtURI"], "host_total_bytes": p["HostTotalBytes"],
        }
        got = {k: j.get(k) for k in expect}
        tap.ok(got == expect, "status --json: settings as on the bus", (got, expect))
        tap.ok(isinstance(j.get("host_free_bytes"), int) and isinstance(j.get("tick_count"), int)
               and 0 < j["tick_count"] <= p["TickCount"], "status --json: host free and tick count", j)
        doms = env.list_domains()
        jd = {x["name"]: x for x in j.get("domains", [])}
        bad = []
        for name, d in doms.items():
            same, expect_d = domain_json_matches(jd.get(name), d)
            if not same:
                bad.append(f"{jd.get(name)} != {expect_d}")
        tap.ok(not bad and len(jd) == len(doms), "status --json: every guest, every field", "\n".join(bad))
        tap.ok([x["name"] for x in j["domains"]] == sorted(doms), "status --json: guests sorted by name")


def test_domains(env):
    env.pause()
    r = env.ctl_run("domains")
    doms = env.list_domains()
    header, rows = parse_table(r.out)
    tap.ok(r.rc == 0 and header[0] == "NAME" and not check_table_rows(rows, doms, time.time() * 1e6),
           "domains: the guest table", check_table_rows(rows, doms, time.time() * 1e6) or r)
    r = env.ctl_run("domains", "--no-legend")
    _, rows = parse_table(r.out, legend=False)
    tap.ok(r.rc == 0 and "NAME" not in r.out and sorted(rows) == sorted(doms), "domains --no-legend", r)
    r = env.ctl_run("--json=short", "domains")
    ok = r.rc == 0 and len(r.out.splitlines()) == 1
    try:
        j = json.loads(r.out)
    except ValueError:
        j, ok = {}, False
    tap.ok(ok and list(j) == ["domains"], "domains --json=short: one line, one object", r)
    bad = [name for name, d in doms.items()
           if not domain_json_matches(next((x for x in j.get("domains", []) if x["name"] == name), None), d)[0]]
    tap.ok(not bad, "domains --json: as the daemon reports", bad)
    r = env.ctl_run("domains", "--json")
    tap.ok(r.rc == 0 and json.loads(r.out) == j and len(r.out.splitlines()) > 1, "domains --json: pretty by default")


def test_setters(env):
    cases = [
        (["set-threshold", "domain", "150M"], "DomainThresholdBytes", 150 * MiB),
        (["set-threshold", "domain", "1.5G"], "DomainThresholdBytes", int(1.5 * GiB)),
        (["set-threshold", "domain", "157286400"], "DomainThresholdBytes", 157286400),
        (["set-threshold", "host", "300M"], "HostThresholdBytes", 300 * MiB),
        (["set-threshold", "host", "512MiB"], "HostThresholdBytes", 512 * MiB),
        (["set-interval", "0.5"], "IntervalUSec", 500000),
        (["set-interval", "250ms"], "IntervalUSec", 250000),
        (["set-budget", "4G"], "HostBudgetBytes", 4 * GiB),
        (["set-budget", "none"], "HostBudgetBytes", 0),
    ]
    for argv, prop, value in cases:
        r = env.ctl_run(*argv)
        got = env.prop(prop)
        tap.ok(r.rc == 0 and r.out == "" and r.err == "" and got == value,
               f"{' '.join(argv)} sets {prop}", f"{r}\n{prop}={got}")

    r = env.ctl_run("set-budget", "2G")
    r2 = env.ctl_run("status")
    tap.ok(r.rc == 0 and re.search(r"^Host: .*budget 2G$", r2.out, re.M) is not None, "status shows the budget",
           r2.out)
    env.ctl_run("set-budget", "none")

    # The daemon's own refusals: one line, its reason, nothing changed.
    before = env.props()
    refusals = [
        (["set-interval", "0.01"], "set interval", "IntervalUSec"),
        (["set-interval", "2h"], "set interval", "IntervalUSec"),
        (["set-threshold", "domain", "2T"], "set threshold", "DomainThresholdBytes"),
        (["set-threshold", "host", "100T"], "set threshold", "HostThresholdBytes"),
        (["set-budget", "100M"], "set budget", "HostBudgetBytes"),
    ]
    for argv, what, prop in refusals:
        r = env.ctl_run(*argv)
        tap.ok(one_line_error(r, f"Failed to {what}: ") and env.prop(prop) == before[prop],
               f"refused by memcoordd, unchanged: {' '.join(argv)}", r)

    r = env.ctl_run("pause")
    tap.ok(r.rc == 0 and env.prop("State") == "paused", "pause", r)
    r = env.ctl_run("pause")
    tap.ok(r.rc == 0 and env.prop("State") == "paused", "pause twice", r)
    r = env.ctl_run("resume")
    tap.ok(r.rc == 0 and env.prop("State") == "running", "resume", r)

    env.ctl_run("set-interval", "0.2")
    env.ctl_run("set-threshold", "domain", "100M")
    env.ctl_run("set-threshold", "host", "200M")


def test_limits(env):
    r = env.ctl_run("set-limits", "vm1", "--min", "300M", "--max", "1.5G", "--weight", "200")
    d = env.list_domains()["vm1"]
    tap.ok(r.rc == 0 and r.err == "" and (d["min"], d["max"], d["weight"]) == (300 * MiB, int(1.5 * GiB), 200),
           "set-limits sets min, max and weight", f"{r}\n{d}")
    tap.ok(env.domain_prop("vm1", "MinBytes") == 300 * MiB and env.domain_prop("vm1", "Weight") == 200,
           "set-limits: the guest's object agrees")
    r = env.ctl_run("set-limits", "vm1", "--weight", "300")
    d = env.list_domains()["vm1"]
    tap.ok(r.rc == 0 and (d["min"], d["max"], d["weight"]) == (300 * MiB, int(1.5 * GiB), 300),
           "set-limits keeps the limits not given", d)
    r = env.ctl_run("set-limits", env.list_domains()["vm1"]["uuid"], "--max", "default")
    d = env.list_domains()["vm1"]
    tap.ok(r.rc == 0 and d["max"] == d["maximum"] and d["min"] == 300 * MiB and d["weight"] == 300,
           "set-limits by UUID; --max default follows the guest's maximum", f"{r}\n{d}")
    r = env.ctl_run("set-limits", "vm1", "--weight", "default", "--min", "0")
    d = env.list_domains()["vm1"]
    tap.ok(r.rc == 0 and d["weight"] == 100 and d["min"] == env.list_domains()["vm2"]["min"],
           "set-limits: default weight and floor", d)
    r = env.ctl_run("set-limits", "vm3", "--min", "4G")
    tap.ok(one_line_error(r, "Failed to set limits", "vm3") and env.list_domains()["vm3"]["min"] != 4 * GiB,
           "set-limits: a floor above the guest's memory is refused", r)

    r = env.ctl_run("exclude", "vm2")
    tap.ok(r.rc == 0 and env.list_domains()["vm2"]["status"] == "excluded"
           and env.domain_prop("vm2", "Excluded") is True, "exclude", r)
    r = env.ctl_run("domains")
    tap.ok(re.search(r"^vm2\s+excluded\s", r.out, re.M) is not None, "domains shows the exclusion", r.out)
    r = env.ctl_run("include", "vm2")
    tap.ok(r.rc == 0 and env.domain_prop("vm2", "Excluded") is False
           and env.wait_until(lambda: env.list_domains()["vm2"]["status"] == "managed"), "include", r)

    # Stored in the guest's domain XML (the daemon's test driver keeps it): applied at once,
    # and still so once the next ticks have read the metadata back.
    r = env.ctl_run("set-limits", "vm3", "--min", "400M", "--max", "900M", "--weight", "250", "--persistent")
    ticks = env.prop("TickCount")
    env.wait_until(lambda: env.prop("TickCount") >= ticks + 2)
    d = env.list_domains()["vm3"]
    tap.ok(r.rc == 0 and r.err == "" and (d["min"], d["max"], d["weight"]) == (400 * MiB, 900 * MiB, 250),
           "set-limits --persistent", f"{r}\n{d}")
    r = env.ctl_run("exclude", "vm3", "--persistent")
    tap.ok(r.rc == 0 and env.wait_until(lambda: env.list_domains()["vm3"]["status"] == "excluded")
           and env.list_domains()["vm3"]["weight"] == 250, "exclude --persistent keeps the limits", r)
    r = env.ctl_run("include", "vm3", "--persistent")
    tap.ok(r.rc == 0 and env.wait_until(lambda: env.list_domains()["vm3"]["status"] == "managed"),
           "include --persistent", r)
    r = env.ctl_run("set-limits", "vm3", "--min", "default", "--max", "default", "--weight", "default",
                    "--persistent")
    d = env.list_domains()["vm3"]
    tap.ok(r.rc == 0 and d["weight"] == 100 and d["max"] == d["maximum"], "set-limits --persistent back to defaults",
           f"{r}\n{d}")
    r = env.ctl_run("pause", "--persistent")
    tap.ok(one_line_error(r, "--persistent") and env.prop("State") == "running", "--persistent is refused with pause", r)

    for argv, what in ((["set-limits", "nosuchvm", "--min", "300M"], "set limits"),
                       (["set-limits", "nosuchvm", "--min", "300M", "--max", "1G", "--weight", "5"], "set limits"),
                       (["exclude", "nosuchvm"], "exclude guest"), (["include", "nosuchvm"], "include guest")):
        r = env.ctl_run(*argv)
        tap.ok(one_line_error(r, f"Failed to {what}", "no such guest", "nosuchvm"),
               f"unknown guest: {' '.join(argv)}", r)


def test_reload(env):
    with open(env.config, "w") as f:
        f.write("[Domain vm3]\nWeight=77\n")
    r = env.ctl_run("reload")
    tap.ok(r.rc == 0 and r.err == "" and env.list_domains()["vm3"]["weight"] == 77,
           "reload applies the config file", f"{r}\n{env.list_domains()['vm3']}")
    with open(env.config, "w") as f:
        f.write("[Coordinator]\nDomainThreshold=lots\n")
    r = env.ctl_run("reload")
    tap.ok(one_line_error(r, "Failed to reload", "not valid", "DomainThreshold")
           and env.list_domains()["vm3"]["weight"] == 77, "reload: a bad config is reported, nothing changes", r)
    with open(env.config, "w") as f:
        f.write("# memcoordctl tests\n")
    env.ctl_run("reload")


def test_unprivileged(env):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        tap.skip("unprivileged caller", "needs root and setpriv")
        return
    ctl = os.path.join(env.tmp, "memcoordctl")
    shutil.copy(env.ctl, ctl)
    os.chmod(ctl, 0o755)

    def as_nobody(*argv):
        return run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ctl, *argv],
                   env=env.env(HOME="/"))

    r = as_nobody("status")
    tap.ok(r.rc == 0 and r.clean() and "vm1" in r.out, "nobody may read: status", r)
    r = as_nobody("--json", "domains")
    tap.ok(r.rc == 0 and len(json.loads(r.out)["domains"]) == len(GUESTS), "nobody may read: domains --json", r)
    before = env.props()
    for argv, what in ((["set-threshold", "domain", "150M"], "set threshold"), (["pause"], "pause"),
                       (["set-interval", "1"], "set interval"), (["exclude", "vm1"], "exclude guest"),
                       (["set-limits", "vm1", "--weight", "5"], "set limits"), (["reload"], "reload")):
        r = as_nobody(*argv)
        tap.ok(one_line_error(r, f"Failed to {what}: access denied", "root"), f"nobody is denied: {' '.join(argv)}", r)
    after = env.props()
    d = env.list_domains()["vm1"]
    tap.ok(all(after[k] == before[k] for k in ("DomainThresholdBytes", "State", "IntervalUSec"))
           and d["status"] != "excluded" and d["weight"] != 5, "nobody changed nothing", (before, after, d))


def test_user_bus(env):
    # The same bus, reached as the session bus: --user talks to it, --system (default) does not.
    e = env.env(DBUS_SESSION_BUS_ADDRESS=env.address, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={env.tmp}/none")
    r = run([env.ctl, "--user", "domains", "--no-legend"], env=e)
    tap.ok(r.rc == 0 and sorted(parse_table(r.out, legend=False)[1]) == sorted(GUESTS), "--user", r)
    r = run([env.ctl, "--user", "--system", "domains"], env=e)
    tap.ok(one_line_error(r, "system bus"), "--system after --user", r)
    r = run([env.ctl, "--user", "-H", "somewhere", "status"], env=e)
    tap.ok(one_line_error(r, "--host", "--user"), "--host with --user is refused", r)


def test_monitor(env):
    p, lines = start_monitor(env)
    tick = lines.expect(lambda l: re.search(r" tick \d+: host free \S+, \d+ managed, \d+ changed$", l))
    tap.ok(tick is not None and re.match(r"^\d\d:\d\d:\d\d\.\d{3} ", tick), "monitor: tick lines, time-stamped",
           "\n".join(lines.lines[-10:]))

    env.ctl_run("set-threshold", "domain", "50M")
    got = lines.expect(lambda l: l.endswith(" DomainThresholdBytes: 50M"))
    tap.ok(got is not None, "monitor: a setting change", "\n".join(lines.lines[-10:]))
    # A lower threshold lets idle guests give more back: balloons move.
    got = lines.expect(lambda l: re.search(r" vm\d: balloon \S+ -> \S+ \([+-]\S+, claim\)$", l))
    tap.ok(got is not None, "monitor: balloon changes", "\n".join(lines.lines[-10:]))
    env.ctl_run("pause")
    got = lines.expect(lambda l: l.endswith(" State: paused"))
    tap.ok(got is not None, "monitor: pause", "\n".join(lines.lines[-10:]))
    env.ctl_run("exclude", "vm3")
    got = lines.expect(lambda l: l.endswith(" vm3: Status: excluded"))
    tap.ok(got is not None, "monitor: a guest's status", "\n".join(lines.lines[-10:]))
    env.ctl_run("include", "vm3")
    env.ctl_run("resume")
    got = lines.expect(lambda l: l.endswith(" State: running"))
    tap.ok(got is not None, "monitor: resume", "\n".join(lines.lines[-10:]))
    # Per-tick property noise is not printed.
    lines.expect(lambda l: False, timeout=0.6)
    noise = [l for l in lines.lines if "TickCount" in l or "HostFreeBytes" in l]
    tap.ok(not noise, "monitor: no per-tick property noise", noise)
    rc, err = stop(p)
    tap.ok(rc == 0 and not any(m in err for m in SANITIZER_MARKS) and err == "", "monitor: SIGINT stops it, exit 0",
           f"rc={rc} {err}")

    p, lines = start_monitor(env, "--json")
    env.wait_ticks(2)
    env.ctl_run("set-interval", "0.3")
    # However long the part above took, vm1 has room to give: a slow run may have left every
    # guest at the default floor.
    env.ctl_run("set-limits", "vm1", "--min", "128M")
    env.ctl_run("set-threshold", "domain", "30M")
    lines.expect(lambda l: '"balloon"' in l, timeout=10)
    lines.expect(lambda l: '"tick"' in l, timeout=10)
    env.manager_call("Pause")
    lines.expect(lambda l: '"State"' in l, timeout=10)
    lines.expect(lambda l: '"tick"' in l, timeout=10)
    env.wait_ticks(2)
    rc, err = stop(p, signal.SIGTERM)
    try:
        events = [json.loads(l) for l in lines.lines]
        valid = all(isinstance(e, dict) and isinstance(e.get("event"), str) and isinstance(e.get("time_usec"), int)
                    for e in events)
    except ValueError:
        events, valid = [], False
    tap.ok(valid and rc == 0 and err == "", "monitor --json: one JSON object per line; SIGTERM exits 0",
           "\n".join(lines.lines[-10:]) + err)
    ticks = [e for e in events if e.get("event") == "tick"]
    tap.ok(ticks and all(set(e) == {"time_usec", "event", "tick", "host_free_bytes", "managed", "changed"}
                         for e in ticks)
           and [e["tick"] for e in ticks] == sorted(e["tick"] for e in ticks)
           and ticks[-1]["tick"] <= env.prop("TickCount"), "monitor --json: tick events", ticks[-3:])
    interval = [e for e in events if e.get("event") == "property" and e.get("property") == "IntervalUSec"]
    tap.ok(interval and interval[-1]["value"] == 300000 and interval[-1]["name"] is None
           and interval[-1]["object"] == "/org/memcoord", "monitor --json: property events", interval)
    # Paused now: every guest's last balloon event is where its balloon is.
    balloons = {}
    for e in events:
        if e.get("event") == "balloon":
            balloons[e["name"]] = e
    doms = env.list_domains()
    bad = [(n, e, doms[n]["actual"]) for n, e in balloons.items()
           if e["to_bytes"] != doms[n]["actual"] or e["object"] != doms[n]["object"]
           or e["reason"] not in ("claim", "grant", "crunch-claim", "crunch-grant", "clamp")]
    tap.ok(balloons and not bad, "monitor --json: balloon events agree with the guests' balloons", bad or events[-5:])

    env.resume()
    env.ctl_run("set-limits", "vm1", "--min", "default")
    env.ctl_run("set-interval", "0.2")
    env.ctl_run("set-threshold", "domain", "100M")


def test_monitor_restart(env):
    p, lines = start_monitor(env)
    first = lines.expect(lambda l: " tick " in l)
    env.stop_daemon()
    stopped = lines.expect(lambda l: l.endswith(" memcoordd stopped"))
    env.start_daemon(wait=False)
    started = lines.expect(lambda l: l.endswith(" memcoordd started"), timeout=20)
    tick = lines.expect(lambda l: " tick " in l, timeout=20)
    env.wait_for_daemon()
    rc, err = stop(p)
    tap.ok(first and stopped and started and tick and rc == 0 and err == "",
           "monitor outlives a daemon restart and says so", "\n".join(lines.lines[-10:]) + f"\nrc={rc} {err}")


def test_top_plain(env):
    env.pause()
    r = env.ctl_run("top", "-n", "2", env=env.env(COLUMNS="100"))
    doms = env.list_domains()
    snaps = re.split(r"\n\n(?=memcoordd )", r.out)
    tap.ok(r.rc == 0 and r.err == "" and len(snaps) == 2, "top -n 2 without a terminal: two snapshots", r)
    problems = []
    for snap in snaps:
        ls = snap.strip("\n").splitlines()
        if not ls or not re.match(r"^memcoordd paused  policy adaptive  interval 0\.2s  tick \d+$", ls[0]):
            problems.append(f"title: {ls[:1]}")
            continue
        rows = {l.split()[0]: l for l in ls[4:]}
        if sorted(rows) != sorted(doms):
            problems.append(f"rows: {sorted(rows)}")
            continue
        for name, d in doms.items():
            line = rows[name]
            if len(line) > 100:
                problems.append(f"{name}: wider than COLUMNS")
            f = line.split()
            cells = [(f[1] == d["status"]), expect_size_cell(f[2], d, d["actual"], False),
                     expect_size_cell(f[3], d, d["target"], False), expect_size_cell(f[4], d, d["unused"], True),
                     expect_size_cell(f[5], d, d["max"], False)]
            bar = re.search(r"\[([#\-. ]*)\]$", line)
            if not all(cells) or not bar:
                problems.append(f"{name}: {line} vs {d}")
                continue
            b = bar.group(1)
            if d["max"]:
                filled = b.count("#") + b.count("-")
                want = d["actual"] * len(b) / d["max"]
                unused = b.count("-")
                want_unused = 0 if d["status"] == "no-balloon" else d["unused"] * len(b) / d["max"]
                if abs(filled - want) > 1 or abs(unused - want_unused) > 1:
                    problems.append(f"{name}: bar {b!r} for {d['actual']}/{d['unused']}/{d['max']}")
    tap.ok(not problems, "top snapshots: the daemon's figures and bars to scale", "\n".join(problems) + "\n" + r.out)

    r = env.ctl_run("top", "-n", "1", "--json")
    try:
        j = json.loads(r.out)
        ok = len(r.out.splitlines()) == 1 and j["state"] == "paused"
        bad = [x["name"] for x in j["domains"] if not domain_json_matches(x, env.list_domains()[x["name"]])[0]]
    except (ValueError, KeyError):
        ok, bad = False, ["?"]
    tap.ok(r.rc == 0 and ok and not bad, "top -n 1 --json: one status object per line", r)

    env.resume()
    p = subprocess.Popen([env.ctl, "top"], env=env.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_die_with_parent)
    env.children.append(p)
    reader = LineReader(p)
    reader.expect(lambda l: l.startswith("vm3 "))
    env.stop_daemon()
    try:
        rc = p.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    err = p.stderr.read() if rc is not None else ""
    tap.ok(rc == 1 and err.strip() == "memcoordctl: memcoordd stopped",
           "plain top ends with an error when memcoordd stops", f"rc={rc} {err}")
    env.start_daemon()


def pty_top(env, rows, cols, actions):
    """Runs top in a pseudo-terminal of rows x cols; actions(fd, read) drives it. Returns
    (exit status, all output, termios lflag while running, termios lflag after exit)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execve(env.ctl, [env.ctl, "top"], env.env(TERM="xterm"))
        finally:
            os._exit(127)
    out = bytearray()

    def read(until, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until(bytes(out)):
                return True
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out.extend(chunk)
        return until(bytes(out))

    status = None
    lflag_running = lflag_after = None
    try:
        read(lambda b: b.count(b"\x1b[H") >= 2)
        lflag_running = termios.tcgetattr(fd)[3]
        actions(fd, read)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            read(lambda b: False, timeout=0.1)
            wpid, st = os.waitpid(pid, os.WNOHANG)
            if wpid == pid:
                status = os.waitstatus_to_exitcode(st)
                break
        try:
            lflag_after = termios.tcgetattr(fd)[3]
        except termios.error:
            pass
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    return status, bytes(out), lflag_running, lflag_after


def test_top_pty(env):
    def quit_at_once(fd, read):
        read(lambda b: all(g.encode() in b for g in GUESTS))
        os.write(fd, b"q")

    status, out, running, after = pty_top(env, 30, 100, quit_at_once)
    text = out.decode(errors="replace")
    tap.ok(status == 0, "top in a pty: q quits with exit 0", f"status={status}")
    tap.ok(all(g in text for g in GUESTS) and "memcoordd running" in text and "q: quit" in text,
           "top in a pty: shows the daemon and every guest", text[-2000:])
    tap.ok(out.startswith(b"\x1b[?1049h") and b"\x1b[?25h\x1b[?1049l" in out, "top: alternate screen in and out",
           out[:40] + b" ... " + out[-40:])
    tap.ok(running is not None and not running & termios.ECHO and not running & termios.ICANON
           and after is not None and after & termios.ECHO and after & termios.ICANON,
           "top: raw keyboard while running, terminal restored after", f"{running} {after}")
    tap.ok(not any(m in text for m in SANITIZER_MARKS), "top in a pty: no sanitizer report", text[-2000:])

    def resize_then_ctrl_c(fd, read):
        read(lambda b: b"vm3" in b)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 6, 30, 0, 0))
        read(lambda b: b"more" in b)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 3, 10, 0, 0))
        read(lambda b: False, timeout=0.8)
        os.write(fd, b"\x03")

    status, out, _, after = pty_top(env, 24, 80, resize_then_ctrl_c)
    text = out.decode(errors="replace")
    tap.ok(status == 0 and "... and " in text and after is not None and after & termios.ECHO,
           "top in a pty: survives resizing to 30x6 and 10x3; ^C quits", f"status={status}\n{text[-1500:]}")

    seen = {}

    def daemon_restart(fd, read):
        read(lambda b: b"vm3" in b)
        env.stop_daemon()
        seen["stopped"] = read(lambda b: b"stopped; waiting" in b)
        env.start_daemon()
        seen["back"] = read(lambda b: b.rfind(b"memcoordd running") > b.rfind(b"stopped; waiting"))
        os.write(fd, b"q")

    status, out, _, _ = pty_top(env, 24, 80, daemon_restart)
    tap.ok(status == 0 and seen.get("stopped") and seen.get("back"),
           "top in a pty: waits through a daemon restart", f"status={status} {seen}\n{out[-1500:]!r}")


def tmux(sock, *args, check=True):
    p = subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=20)
    if check and p.returncode != 0:
        raise RuntimeError(f"tmux {' '.join(args)}: {p.stderr}")
    return p.stdout


def test_top_tmux(env):
    if not shutil.which("tmux"):
        tap.skip("top in tmux", "tmux is not installed")
        return
    sock = os.path.join(env.tmp, "tmux.sock")
    e = env.env()
    status_file = os.path.join(env.tmp, "top.status")
    cmd = "env " + " ".join(shlex.quote(f"{k}={e[k]}") for k in
                                  ("DBUS_SYSTEM_BUS_ADDRESS", "ASAN_OPTIONS", "UBSAN_OPTIONS") if k in e)
    # The shell records the exit status: tmux does not always reap a pane's process in time
    # to tell it.
    cmd += " " + shlex.quote(env.ctl) + " top; echo $? > " + shlex.quote(status_file)
    try:
        tmux(sock, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "sh -c " + shlex.quote("sleep 0.3; " + cmd))
        tmux(sock, "set-option", "-t", "t", "remain-on-exit", "on")

        def screen():
            return tmux(sock, "capture-pane", "-p", "-t", "t")

        env.wait_until(lambda: all(re.search(rf"^{re.escape(g)} ", screen(), re.M) for g in GUESTS))
        s = screen()
        lines = s.splitlines()
        rows = [l for l in lines if re.match(r"^vm\d ", l)]
        tap.ok(lines and lines[0].startswith("memcoordd running") and len(rows) == 3
               and all(re.search(r"\[[#\-.]+\]$", l) and len(l) <= 100 for l in rows)
               and any(l.startswith("NAME") and "MEMORY" in l for l in lines),
               "top in tmux 100x30: header, one row and one bar per guest", s)

        tmux(sock, "resize-window", "-t", "t", "-x", "36", "-y", "7")
        env.wait_until(lambda: "more" in screen())
        s = screen()
        tap.ok("... and " in s and all(len(l) <= 36 for l in s.splitlines()) and len(s.splitlines()) <= 7,
               "top in tmux 36x7: cut to the window", s)

        tmux(sock, "send-keys", "-t", "t", "q")

        def exit_status():
            try:
                with open(status_file) as f:
                    return f.read().strip() or None
            except OSError:
                return None

        env.wait_until(lambda: exit_status() is not None)
        screen_on = tmux(sock, "display-message", "-p", "-t", "t", "#{alternate_on}").strip()
        tap.ok(exit_status() == "0" and screen_on == "0", "top in tmux: q quits, exit 0, normal screen back",
               f"exit status {exit_status()}, alternate screen {screen_on}")
    finally:
        tmux(sock, "kill-server", check=False)


def test_completion_live(env):
    got = complete(env, ["set-limits", ""])
    tap.ok(got == sorted(GUESTS), "completion: guest names from the daemon", got)
    got = complete(env, ["set-limits", "vm"])
    tap.ok(got == ["vm-noballoon", "vm1", "vm2", "vm3"], "completion: guest names by prefix", got)
    env.ctl_run("exclude", "vm2")
    got_in = complete(env, ["include", ""])
    got_ex = complete(env, ["--no-legend", "exclude", ""])
    env.ctl_run("include", "vm2")
    tap.ok(got_in == ["vm2"] and got_ex == ["vm-noballoon", "vm1", "vm3"],
           "completion: include offers excluded guests, exclude the others", (got_in, got_ex))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memcoordd", required=True)
    ap.add_argument("--memcoordctl", required=True)
    ap.add_argument("--node-xml", required=True)
    ap.add_argument("--completion", required=True)
    ap.add_argument("--man", nargs="*", default=[])
    args = ap.parse_args()
    args.node_xml = os.path.abspath(args.node_xml)
    for tool in ("dbus-daemon", "busctl"):
        if not shutil.which(tool):
            print(f"1..0 # SKIP {tool} is not installed")
            return 0

    env = Env(args)
    # meson stops a test that runs too long with SIGTERM: clean up then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        test_static(env, args)
        test_man(args)
        test_completion_static(env)
        env.start_bus()
        test_no_daemon(env)
        env.start_daemon()
        test_status(env)
        test_domains(env)  # still paused: the figures hold still
        env.resume()
        test_setters(env)
        test_limits(env)
        test_reload(env)
        test_unprivileged(env)
        test_user_bus(env)
        test_completion_live(env)
        test_monitor(env)
        test_monitor_restart(env)
        test_top_plain(env)
        test_top_pty(env)
        test_top_tmux(env)
    except Exception as e:  # a broken environment is one failure, with its story
        import traceback
        tap.ok(False, f"harness: {type(e).__name__}: {e}", traceback.format_exc() + "\n" + env.daemon_output())
    finally:
        env.cleanup()
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
