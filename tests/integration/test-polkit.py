#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The authorization path with a real polkitd.

A private system-like dbus-daemon (dbus/org.memcoord.conf and polkit's own bus policy), the
Debian polkitd on it (polkitd takes the system bus from DBUS_SYSTEM_BUS_ADDRESS and drops to
the polkitd user itself), and memcoordd as root on libvirt's test driver. polkitd has no option
for another rules or actions directory, so for the time of the run this file installs
  - dbus/org.memcoord.policy as /usr/share/polkit-1/actions/org.memcoord.test-PID.policy,
  - a rules file /etc/polkit-1/rules.d/10-memcoord.test-PID.rules that says yes to
    org.memcoord.manage for the user mc-admin (and to nobody else),
  - the user mc-admin (useradd --system, when it does not exist),
and removes all three at exit, on SIGTERM too. The rules file only ever names mc-admin.
"""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mctest  # noqa: E402
from mctest import (DOMAIN_IFACE, GIB, MANAGER_IFACE, MANAGER_PATH, MIB, SOURCE_ROOT, Bus,  # noqa: E402
                    CallError, Client, Daemon, Monitor, TempDir, as_user, domain_path, kill_group, on_exit,
                    require_root, require_tools, run, spawn, wait_for)

POLKITD = "/usr/lib/polkit-1/polkitd"
POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_BUS_POLICY = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf"
ACTIONS_DIR = "/usr/share/polkit-1/actions"
RULES_DIR = "/etc/polkit-1/rules.d"
ADMIN = "mc-admin"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
GATE_WORDS = "needs root or the polkit action org.memcoord.manage"

# daemon/auth.h: MC_AUTH_POLKIT_TIMEOUT_USEC.
POLKIT_TIMEOUT = 5.0
INTERVAL = 0.2

RULES = """// memcoord's test suite: %s may manage memcoord, no one else is named.
polkit.addRule(function(action, subject) {
    if (action.id == "org.memcoord.manage" && subject.user == "%s")
        return polkit.Result.YES;
});
""" % (ADMIN, ADMIN)

# What the calls below change, and how to read it back.
ADMIN_CALLS = [
    ("SetDomainThreshold", ["uint64:157286400"], ("DomainThresholdBytes", 157286400)),
    ("SetHostThreshold", ["uint64:314572800"], ("HostThresholdBytes", 314572800)),
    ("SetHostBudget", ["uint64:%d" % (4 * GIB)], ("HostBudgetBytes", 4 * GIB)),
    ("SetInterval", ["uint64:500000"], ("IntervalUSec", 500000)),
    ("Pause", [], ("State", "paused")),
    ("Resume", [], ("State", "running")),
    ("SetDomainLimits", ["string:vm1", "uint64:%d" % (300 * MIB), "uint64:%d" % GIB, "uint32:200"], None),
    ("SetDomainExcluded", ["string:vm2", "boolean:true"], None),
    ("Reload", [], None),
]


def install_machine_files():
    """The action, the rules and the user, each undone at exit."""
    tag = f"memcoord.test-{os.getpid()}"
    action = os.path.join(ACTIONS_DIR, f"org.{tag}.policy")
    shutil.copyfile(os.path.join(SOURCE_ROOT, "dbus", "org.memcoord.policy"), action)
    on_exit(lambda: os.unlink(action))
    rules = os.path.join(RULES_DIR, f"10-{tag}.rules")
    with open(rules, "w") as f:
        f.write(RULES)
    os.chmod(rules, 0o644)
    on_exit(lambda: os.unlink(rules))
    try:
        pwd.getpwnam(ADMIN)
    except KeyError:
        run(["useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", ADMIN],
            check=True)
        on_exit(lambda: run(["userdel", ADMIN], check=True))


class Polkitd:
    """The real polkitd on a private bus."""

    def __init__(self, tmp, bus):
        self.log_path = tmp.join("polkitd.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus.address)
        self.proc = spawn([POLKITD], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        client = Client(bus)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"polkitd exited with {self.proc.returncode}: {self.log_text()}")
            return client.name_has_owner(POLKIT_NAME)
        wait_for(up, 30, what="polkitd to own " + POLKIT_NAME)

    def log_text(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        kill_group(self.proc)
        self.log.close()


def timed_call(client, method, *args):
    """(seconds, error name or None, error message)."""
    start = time.monotonic()
    try:
        client.call(method, *args)
        return time.monotonic() - start, None, ""
    except CallError as e:
        return time.monotonic() - start, e.name, e.message


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv", "useradd", POLKITD)
class PolkitTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        install_machine_files()

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.bus = Bus(self.tmp, extra_policies=[POLKIT_BUS_POLICY])
        self.addCleanup(self.bus.stop)
        self.polkitd = Polkitd(self.tmp, self.bus)
        self.addCleanup(self.polkitd.stop)
        self.daemon = Daemon(self.tmp, self.bus, interval=str(INTERVAL))
        self.addCleanup(self._stop_daemon)
        self.daemon.wait_ready()
        self.root = Client(self.bus)
        self.admin = Client(self.bus, user=ADMIN)
        self.nobody = Client(self.bus, user="nobody")

    def _stop_daemon(self):
        status = self.daemon.stop()
        outcome = getattr(self, "_outcome", None)
        if outcome is not None and not getattr(outcome, "success", True):
            sys.stderr.write(f"--- memcoordd\n{self.daemon.log_text()[-4000:]}\n")
            sys.stderr.write(f"--- polkitd\n{self.polkitd.log_text()[-4000:]}\n")
        self.assertEqual(status, 0, "memcoordd did not exit cleanly:\n" + self.daemon.log_text()[-4000:])

    def monitor(self, names=("org.memcoord",)):
        m = Monitor(self.bus, names=names)
        self.addCleanup(m.stop)
        return m

    def settings(self):
        props = self.root.get_all()
        return {k: props[k] for k in ("State", "IntervalUSec", "DomainThresholdBytes", "HostThresholdBytes",
                                      "HostBudgetBytes")}

    def assert_ticks_kept_cadence(self, mon, start, end):
        """TickCompleted kept coming between start and end (time.monotonic())."""
        ticks = [m for m in mon.signals("TickCompleted") if start <= m["_received"] <= end]
        span = end - start
        self.assertGreaterEqual(len(ticks), 2, "no ticks while polkit was asked")
        stamps = [t["timestamp-realtime"] / 1e6 for t in ticks]
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        # A blocked loop would show one gap as long as the polkit timeout. Scheduling noise on
        # a shared machine is a few hundred ms at worst.
        self.assertLess(max(gaps), 1.0, f"a {max(gaps):.2f} s gap between ticks at a {INTERVAL} s interval")
        self.assertGreaterEqual(len(ticks), int(span / INTERVAL * 0.6),
                                f"{len(ticks)} ticks in {span:.1f} s at a {INTERVAL} s interval")
        return len(ticks), span, max(gaps)

    # ---- who may ----

    def test_authorized_user_changes_settings(self):
        for method, args, expect in ADMIN_CALLS:
            with self.subTest(method=method):
                self.admin.call(method, *args)
                if expect:
                    self.assertEqual(self.root.get(expect[0]), expect[1])
        # Reload keeps what was changed over the bus: it is in the state file.
        props = self.root.get_all(domain_path("vm1"), DOMAIN_IFACE)
        self.assertEqual((props["MinBytes"], props["MaxBytes"], props["Weight"]), (300 * MIB, GIB, 200))
        self.assertEqual(self.root.get("Excluded", domain_path("vm2"), DOMAIN_IFACE), True)
        with open(os.path.join(self.daemon.state_dir, "state.conf")) as f:
            state = f.read()
        self.assertIn("DomainThreshold=153600K", state)

    def test_other_user_denied(self):
        self.root.call("Pause")
        before = self.settings()
        # The pause is kept in the state file: nobody's calls must leave that file as it is.
        state_path = os.path.join(self.daemon.state_dir, "state.conf")
        with open(state_path) as f:
            state_before = f.read()
        self.assertIn("Paused=true", state_before)
        mon = self.monitor(names=("org.memcoord", POLKIT_NAME))
        mark = mon.mark()
        for method, args, _ in ADMIN_CALLS:
            with self.subTest(method=method):
                seconds, name, message = timed_call(self.nobody, method, *args)
                self.assertEqual(name, ACCESS_DENIED, f"{method} by nobody: {name} {message}")
                self.assertIn(GATE_WORDS, message, "denied by the bus, not by memcoordd")
                # The action's defaults (auth_admin for a user not in an active session): polkit
                # answers "authenticate", and a call without the interactive flag is told so.
                self.assertIn("authentication is required", message)
                self.assertLess(seconds, POLKIT_TIMEOUT, "polkit's no took the whole timeout")
        self.assertEqual(self.settings(), before)
        with open(state_path) as f:
            self.assertEqual(f.read(), state_before)
        # polkit was asked each time, about the caller's bus name.
        checks = [m for m in mon.messages[mark:] if m.get("member") == "CheckAuthorization"]
        self.assertEqual(len(checks), len(ADMIN_CALLS))
        for c in checks:
            subject, action = c["payload"]["data"][0], c["payload"]["data"][1]
            self.assertEqual(subject[0], "system-bus-name")
            self.assertEqual(action, "org.memcoord.manage")

    def test_root_needs_no_polkit(self):
        mon = self.monitor(names=("org.memcoord", POLKIT_NAME))
        mark = mon.mark()
        self.root.call("SetDomainThreshold", "uint64:157286400")
        self.assertEqual(self.root.get("DomainThresholdBytes"), 157286400)
        self.assertEqual([m for m in mon.messages[mark:] if m.get("member") == "CheckAuthorization"], [])

    def test_interactive_flag_passed_to_polkit(self):
        mon = self.monitor(names=("org.memcoord", POLKIT_NAME))
        flags = {}
        for interactive in ("yes", "no"):
            mark = mon.mark()
            r = run(as_user(ADMIN) + ["busctl", "--address=" + self.bus.address,
                                      "--allow-interactive-authorization=" + interactive, "call", "org.memcoord",
                                      MANAGER_PATH, MANAGER_IFACE, "SetDomainThreshold", "t",
                                      str(150 * MIB if interactive == "yes" else 160 * MIB)])
            self.assertEqual(r.returncode, 0, r.stderr)
            check = mon.find(lambda m: m.get("member") == "CheckAuthorization", since=mark, timeout=5)
            self.assertIsNotNone(check, "memcoordd did not ask polkit")
            flags[interactive] = check["payload"]["data"][3]
        self.assertEqual(flags, {"yes": 1, "no": 0}, "CheckAuthorization's AllowUserInteraction flag")
        self.assertEqual(self.root.get("DomainThresholdBytes"), 160 * MIB)

    def test_memcoordctl_as_authorized_user(self):
        # memcoordctl allows interactive authorization, so an agent could ask for a password;
        # here the rules say yes without one.
        memcoordctl = os.environ["MEMCOORDCTL"]
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        mon = self.monitor(names=("org.memcoord", POLKIT_NAME))
        mark = mon.mark()
        r = run(as_user(ADMIN) + [memcoordctl, "set-threshold", "domain", "150M"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.root.get("DomainThresholdBytes"), 150 * MIB)
        check = mon.find(lambda m: m.get("member") == "CheckAuthorization", since=mark, timeout=5)
        self.assertIsNotNone(check, "memcoordd did not ask polkit")
        self.assertEqual(check["payload"]["data"][3], 1, "memcoordctl's call was not interactive")

        r = run(as_user("nobody") + [memcoordctl, "set-threshold", "domain", "160M"], env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("Access denied", r.stderr)
        self.assertEqual(self.root.get("DomainThresholdBytes"), 150 * MIB)

    # ---- polkit slow or gone ----

    def test_ticks_keep_cadence_while_polkit_stopped(self):
        before = self.settings()
        mon = self.monitor()
        os.kill(self.polkitd.proc.pid, signal.SIGSTOP)
        results = []

        def call():
            results.append(timed_call(self.admin, "SetDomainThreshold", "uint64:157286400"))
        threads = [threading.Thread(target=call) for _ in range(3)]
        start = time.monotonic()
        for t in threads:
            t.start()
        # Root needs no polkit: its calls are answered at once meanwhile.
        time.sleep(1.0)
        seconds, name, message = timed_call(self.root, "SetHostThreshold", "uint64:%d" % (300 * MIB))
        self.assertIsNone(name, message)
        self.assertLess(seconds, 1.0, "root's call waited for polkit")
        for t in threads:
            t.join(30)
        wall = time.monotonic() - start
        end = time.monotonic()
        os.kill(self.polkitd.proc.pid, signal.SIGCONT)

        self.assertEqual(len(results), 3)
        for seconds, name, message in results:
            self.assertEqual(name, ACCESS_DENIED, message)
            self.assertIn("did not answer in time", message)
            self.assertGreaterEqual(seconds, POLKIT_TIMEOUT - 0.5)
            self.assertLess(seconds, POLKIT_TIMEOUT + 2.0)
        # Asked side by side, not one after the other.
        self.assertLess(wall, 2 * POLKIT_TIMEOUT)
        n, span, gap = self.assert_ticks_kept_cadence(mon, start, end)
        print(f"\npolkit stopped: denied in {', '.join('%.2f s' % r[0] for r in results)}; "
              f"{n} ticks in {span:.1f} s, largest gap {gap:.2f} s", flush=True)
        after = self.settings()
        self.assertEqual(after["DomainThresholdBytes"], before["DomainThresholdBytes"])
        self.assertEqual(after["HostThresholdBytes"], 300 * MIB)

        # polkit back: its late answers to the timed-out checks are dropped, new ones work.
        self.admin.call("SetDomainThreshold", "uint64:157286400")
        self.assertEqual(self.root.get("DomainThresholdBytes"), 157286400)

    def test_stop_while_check_pending(self):
        # A check pending at SIGTERM: memcoordd stops at once (it does not wait for polkit's
        # timeout) and cleanly; the caller gets an error, not a success.
        os.kill(self.polkitd.proc.pid, signal.SIGSTOP)
        results = []
        caller = threading.Thread(target=lambda: results.append(
            timed_call(self.admin, "SetDomainThreshold", "uint64:157286400")))
        caller.start()
        time.sleep(1.0)
        start = time.monotonic()
        self.assertEqual(self.daemon.stop(), 0, self.daemon.log_text()[-4000:])
        self.assertLess(time.monotonic() - start, POLKIT_TIMEOUT - 1.0, "memcoordd waited for polkit to stop")
        caller.join(30)
        self.assertEqual(len(results), 1)
        self.assertIsNotNone(results[0][1], "the call succeeded while polkit was stopped")

    def test_ticks_keep_cadence_without_polkit(self):
        self.polkitd.stop()
        wait_for(lambda: not self.root.name_has_owner(POLKIT_NAME), 10, what="polkitd gone")
        before = self.settings()
        mon = self.monitor()
        start = time.monotonic()
        for _ in range(3):
            seconds, name, message = timed_call(self.admin, "SetDomainThreshold", "uint64:157286400")
            self.assertEqual(name, ACCESS_DENIED, message)
            self.assertIn("polkit is not available", message)
            self.assertLess(seconds, 2.0)
        time.sleep(1.0)
        self.assert_ticks_kept_cadence(mon, start, time.monotonic())
        self.assertEqual(self.settings(), before)


if __name__ == "__main__":
    mctest.main()
