# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared pieces of the integration tests that run memcoordd as a process.

Python standard library only; the bus is reached with busctl (systemd), dbus-send
(dbus-bin) and setpriv (util-linux). Every process started here runs in its own session with
a parent-death signal, is registered, and is killed with its process group when the test
ends, when the interpreter exits, and on SIGTERM (what meson sends on a timeout).
"""

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

MEMCOORDD = os.environ.get("MEMCOORDD", "")
SOURCE_ROOT = os.environ.get("MC_SOURCE_ROOT", "")
NODE_XML = os.environ.get("MC_NODE_XML", "")
NODE_URI = "test://" + NODE_XML

BUS_NAME = "org.memcoord"
MANAGER_PATH = "/org/memcoord"
MANAGER_IFACE = "org.memcoord1.Manager"
DOMAIN_IFACE = "org.memcoord1.Domain"
DOMAIN_PREFIX = "/org/memcoord/domain"

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB

# tests/data/node-guests.xml: name -> (uuid, current MiB, max MiB, has a balloon)
NODE_GUESTS = {
    "vm1": ("6695eb01-f6a4-8304-79aa-97f2502e1901", 1024, 2048, True),
    "vm2": ("6695eb01-f6a4-8304-79aa-97f2502e1902", 2048, 2048, True),
    "vm3": ("6695eb01-f6a4-8304-79aa-97f2502e1903", 512, 1024, True),
    "vm-noballoon": ("6695eb01-f6a4-8304-79aa-97f2502e1904", 1024, 1024, False),
}

# ListDomains' struct, in order (org.memcoord1.Manager.xml).
LIST_FIELDS = ("path", "name", "uuid", "status", "actual", "target", "unused", "available", "usable",
               "maximum", "min", "max", "stats_age", "weight", "last_change", "last_reason")

_live = []  # Popen objects to kill at exit
_undo = []  # callables that undo changes to the machine (files, users), run at exit


def kill_group(proc, timeout=10.0):
    """SIGTERM to the process group, SIGKILL after timeout; returns the exit status."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    else:
        # The leader is gone; anything left in its group goes too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc in _live:
        _live.remove(proc)
    return proc.returncode


def _kill_all():
    for proc in list(_live):
        kill_group(proc, timeout=5.0)


def _undo_all():
    while _undo:
        fn = _undo.pop()
        try:
            fn()
        except Exception as e:  # one failed undo must not keep the others from running
            print(f"clean-up {fn!r} failed: {e}", flush=True)


def on_exit(fn):
    """Runs fn at exit, after the processes are gone: on a normal end and on SIGTERM alike.
    For changes outside the test's own directory (a user, a file under /etc)."""
    _undo.append(fn)
    return fn


def _on_sigterm(signum, frame):
    # A timeout: clean up and go at once, without running the rest of the tests.
    _kill_all()
    _undo_all()
    os._exit(128 + signum)


atexit.register(_undo_all)
atexit.register(_kill_all)
signal.signal(signal.SIGTERM, _on_sigterm)


def spawn(argv, *, env=None, stdout=None, stderr=None, stdin=subprocess.DEVNULL):
    """Starts a long-running process in its own session, killed if we die."""
    full = ["setpriv", "--pdeathsig", "KILL", "--"] + list(argv)
    proc = subprocess.Popen(full, env=env, stdout=stdout, stderr=stderr, stdin=stdin,
                            start_new_session=True)
    _live.append(proc)
    return proc


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate until it returns a true value; returns it, or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def path_encode(prefix, external):
    """sd_bus_path_encode()."""
    if not external:
        return prefix + "/_"
    out = []
    for i, ch in enumerate(external):
        if (ch.isascii() and ch.isalpha()) or (ch.isdigit() and i > 0):
            out.append(ch)
        else:
            out.append("_%02x" % ord(ch))
    return prefix + "/" + "".join(out)


def domain_path(name):
    return path_encode(DOMAIN_PREFIX, NODE_GUESTS[name][0])


# What ASan, LSan and UBSan print; any of them in a daemon's output fails the test.
SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


def sanitizer_reports(text):
    """The lines of text that are sanitizer reports."""
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKS)]


def main():
    """unittest.main for one suite: exit 0 if every test ran and passed, 1 on any failure, and
    77 (meson's SKIP) if any test was skipped, so that a suite that could not run does not
    show as a pass."""
    prog = unittest.main(verbosity=2, exit=False)
    result = prog.result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped or result.testsRun == 0:
        for test, why in result.skipped:
            print(f"SKIP {test.id()}: {why}", file=sys.stderr)
        sys.exit(77)
    sys.exit(0)


def require_root(testcase_class):
    """The bus policy lets only root own org.memcoord, and setpriv needs root."""
    if os.geteuid() != 0:
        return unittest.skip("needs root")(testcase_class)
    return testcase_class


def require_tools(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        return unittest.skip("missing tools: " + ", ".join(missing))
    return lambda x: x


class TempDir:
    """A temporary directory that nobody can traverse (for the bus socket)."""

    def __init__(self, prefix="mc-it-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.path, 0o755)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


# ---- the bus ----

# Shaped like the system bus (deny by default) and including the project's real policy file;
# shared with tools/demo.sh.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "system-like-bus.conf.in")) as _f:
    SYSTEM_LIKE = _f.read().replace("@SOCKET@", "{socket}").replace("@POLICY@", "{policy}")

PERMISSIVE = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Shaped like session.conf: no policy at all, anyone may own and call anything. -->
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>
</busconfig>
"""


class Bus:
    """A private dbus-daemon."""

    def __init__(self, tmp, system_like=True, extra_policies=()):
        """extra_policies: more bus policy files to include (e.g. polkit's), system-like only."""
        self.tmp = tmp
        socket_path = tmp.join("bus.sock")
        policy = os.path.join(SOURCE_ROOT, "dbus", "org.memcoord.conf")
        conf = tmp.join("bus.conf")
        text = (SYSTEM_LIKE if system_like else PERMISSIVE).format(socket=socket_path, policy=policy)
        if extra_policies:
            includes = "".join(f"  <include>{p}</include>\n" for p in extra_policies)
            text = text.replace("</busconfig>", includes + "</busconfig>")
        with open(conf, "w") as f:
            f.write(text)
        self.log = open(tmp.join("dbus-daemon.log"), "w")
        self.proc = spawn(["dbus-daemon", "--config-file=" + conf, "--nofork", "--nopidfile",
                           "--print-address=1"], stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            kill_group(self.proc)
            raise AssertionError("dbus-daemon did not start: " + self.log_text())
        self.address = line
        self.socket = socket_path
        os.chmod(socket_path, 0o777)

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        kill_group(self.proc)
        self.proc.stdout.close()
        self.log.close()


# ---- calling ----

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def as_user(user):
    """setpriv's prefix that runs a command as user, with that user's primary group only."""
    import pwd
    if user == "nobody":
        return NOBODY
    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]


class CallError(Exception):
    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def run(argv, timeout=30, env=None, check=False):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          timeout=timeout, env=env, check=check, text=True)


class Client:
    """Calls on one bus, as root or as nobody."""

    def __init__(self, bus, user=None):
        self.bus = bus
        self.prefix = as_user(user) if user else []

    def busctl(self, *args):
        r = run(self.prefix + ["busctl", "--address=" + self.bus.address] + list(args))
        if r.returncode != 0:
            raise AssertionError(f"busctl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def get(self, name, path=MANAGER_PATH, iface=MANAGER_IFACE):
        out = self.busctl("--json=short", "get-property", BUS_NAME, path, iface, name)
        return json.loads(out)["data"]

    def get_all(self, path=MANAGER_PATH, iface=MANAGER_IFACE):
        out = self.busctl("--json=short", "call", BUS_NAME, path, "org.freedesktop.DBus.Properties",
                          "GetAll", "s", iface)
        props = json.loads(out)["data"][0]
        return {k: v["data"] for k, v in props.items()}

    def list_domains(self):
        out = self.busctl("--json=short", "call", BUS_NAME, MANAGER_PATH, MANAGER_IFACE, "ListDomains")
        return [dict(zip(LIST_FIELDS, row)) for row in json.loads(out)["data"][0]]

    def introspect(self, path):
        return self.busctl("introspect", "--xml-interface", BUS_NAME, path)

    def call(self, method, *args, path=MANAGER_PATH, iface=MANAGER_IFACE):
        """A method call through dbus-send, which names the error of a failed call.
        args are dbus-send's typed arguments ("uint64:5", "string:vm1", "boolean:true")."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        r = run(self.prefix + ["dbus-send", "--system", "--print-reply", "--reply-timeout=20000",
                               "--dest=" + BUS_NAME, path, f"{iface}.{method}"] + list(args), env=env)
        if r.returncode == 0:
            return r.stdout
        m = re.match(r"Error ([\w.]+): (.*)", r.stderr.strip(), re.S)
        if not m:
            raise AssertionError(f"dbus-send {method} failed oddly: {r.stderr.strip()}")
        raise CallError(m.group(1), m.group(2))

    def name_has_owner(self, name=BUS_NAME):
        out = self.busctl("--json=short", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                          "org.freedesktop.DBus", "NameHasOwner", "s", name)
        return json.loads(out)["data"][0]


# ---- watching signals ----

class Monitor:
    """busctl monitor on org.memcoord (as root, through org.freedesktop.DBus.Monitoring)."""

    def __init__(self, bus, names=(BUS_NAME,)):
        self.bus = bus
        self.messages = []
        self.cond = threading.Condition()
        self.proc = spawn(["busctl", "--address=" + bus.address, "monitor", "--json=short"] + list(names),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        # In sync: wait until a call of ours shows up in the stream.
        client = Client(bus)

        def pinged():
            client.busctl("call", BUS_NAME, MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping")
            return self.find(lambda m: m.get("member") == "Ping", timeout=1.0)
        wait_for(pinged, 20, what="busctl monitor to see our own call")

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            msg["_received"] = time.monotonic()
            with self.cond:
                self.messages.append(msg)
                self.cond.notify_all()

    def mark(self):
        """Index from which later find() calls look."""
        with self.cond:
            return len(self.messages)

    def signals(self, member=None, since=0, path=None):
        with self.cond:
            msgs = list(self.messages[since:])
        return [m for m in msgs if m.get("type") == "signal" and (member is None or m.get("member") == member)
                and (path is None or m.get("path") == path)]

    def find(self, predicate, since=0, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages[since:]:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def wait_signal(self, member, since=0, timeout=10.0, path=None, where=None):
        def match(m):
            return (m.get("type") == "signal" and m.get("member") == member
                    and (path is None or m.get("path") == path) and (where is None or where(m)))
        return self.find(match, since=since, timeout=timeout)

    def wait_properties_changed(self, prop, value=None, since=0, timeout=10.0, path=MANAGER_PATH):
        def where(m):
            changed = m["payload"]["data"][1]
            return prop in changed and (value is None or changed[prop]["data"] == value)
        return self.wait_signal("PropertiesChanged", since=since, timeout=timeout, path=path, where=where)

    def stop(self):
        kill_group(self.proc)
        self.proc.stdout.close()


# ---- the daemon ----

class Daemon:
    """memcoordd on a bus (or none), its stderr kept in a file."""

    def __init__(self, tmp, bus=None, bus_kind="system", args=(), state_dir=None, config=None, name="memcoordd",
                 interval="0.2", config_text="[Coordinator]\n", wrapper=()):
        """interval: --interval's value, or None to leave it to the config and state files.
        config_text: written to the config file unless that exists already.
        wrapper: a command that runs memcoordd (it must exec it, keeping the pid)."""
        self.tmp = tmp
        self.bus = bus
        self.state_dir = state_dir or tmp.join("state")
        self.config = config or tmp.join("memcoord.conf")
        if not os.path.exists(self.config):
            with open(self.config, "w") as f:
                f.write(config_text)
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("INVOCATION_ID", None)
        env.pop("JOURNAL_STREAM", None)
        argv = [MEMCOORDD, "--config", self.config, "--state-dir", self.state_dir]
        if bus is not None:
            argv += ["--bus", bus_kind]
            env["DBUS_SYSTEM_BUS_ADDRESS" if bus_kind == "system" else "DBUS_SESSION_BUS_ADDRESS"] = bus.address
        else:
            argv += ["--bus", "none"]
        if not any(a.startswith("--connect") or a == "-c" for a in args):
            argv += ["--connect", NODE_URI]
        if interval is not None:
            argv += ["--interval", interval]
        argv += list(args)
        argv = list(wrapper) + argv
        self.argv = argv
        self.log_path = tmp.join(name + ".log")
        self.log = open(self.log_path, "w")
        self.proc = spawn(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.status = None
        self.checked = False

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=60):
        """On the bus, with at least one tick done."""
        client = Client(self.bus)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"memcoordd exited with {self.proc.returncode}:\n{self.log_text()}")
            return client.name_has_owner() and client.get("TickCount") >= 1
        wait_for(ready, timeout, what="memcoordd to own org.memcoord and tick")

    def stop(self, timeout=20, expect=0):
        """SIGTERM; returns the exit status. The first stop checks the daemon: an exit status
        other than expect (None: any) or a sanitizer report in its output (a leak shows only at
        exit) raises AssertionError."""
        if self.status is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            self.status = kill_group(self.proc)
            if not self.log.closed:
                self.log.close()
        if not self.checked:
            self.checked = True
            self.check(expect)
        return self.status

    def check(self, expect=0):
        reports = sanitizer_reports(self.log_text())
        if reports:
            raise AssertionError(f"sanitizer report in {self.log_path}:\n" + "\n".join(reports[:20])
                                 + "\n" + self.log_text()[-4000:])
        if expect is not None and self.status != expect:
            raise AssertionError(f"memcoordd ({self.log_path}) exited with {self.status}, not {expect}:\n"
                                 + self.log_text()[-3000:])


# ---- the claim rule, for checking figures ----

def claim_target_kib(actual_kib, unused_kib, t_kib=100 * 1024, fraction=0.10, floor_kib=256 * 1024,
                     band_kib=1024):
    """A guest with unused > 2T gives back min(c x unused, unused - 2T), never below the floor;
    changes under the dead band are not made. Returns the new target or None."""
    keep = 2 * t_kib
    if unused_kib <= keep:
        return None
    amount = min(int(unused_kib * fraction), unused_kib - keep)
    amount = min(amount, max(actual_kib - floor_kib, 0))
    if amount < band_kib:
        return None
    return actual_kib - amount


def claim_chain_kib(current_kib, steps):
    """Targets on libvirt's test driver (unused = current / 2), tick after tick."""
    out = []
    actual = current_kib
    for _ in range(steps):
        target = claim_target_kib(actual, actual // 2)
        if target is None:
            break
        out.append((actual, target))
        actual = target
    return out
