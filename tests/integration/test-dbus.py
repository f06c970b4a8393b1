#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""memcoordd's D-Bus service on a private bus.

Each test starts its own dbus-daemon (system-like: deny by default plus dbus/org.memcoord.conf,
or permissive like a session bus) and its own memcoordd as root on libvirt's test driver
(tests/data/node-guests.xml, interval 0.2 s), and kills both when it ends.
"""

import os
import signal
import subprocess
import sys
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mctest import main as mctest_main  # noqa: E402
from mctest import (DOMAIN_IFACE, DOMAIN_PREFIX, GIB, MANAGER_IFACE, MANAGER_PATH, MIB, NODE_GUESTS,  # noqa: E402
                    NODE_XML, SOURCE_ROOT, TIB, Bus, CallError, Client, Daemon, Monitor, TempDir,
                    claim_target_kib, domain_path, kill_group, path_encode, require_root, require_tools, run, spawn,
                    wait_for)

ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
INVALID_ARGUMENT = "org.memcoord.Error.InvalidArgument"
NO_SUCH_DOMAIN = "org.memcoord.Error.NoSuchDomain"

# Every method that changes something, with valid arguments (dbus-send syntax).
MUTATING_CALLS = [
    ("SetDomainThreshold", ["uint64:157286400"]),
    ("SetHostThreshold", ["uint64:314572800"]),
    ("SetHostBudget", ["uint64:%d" % (4 * GIB)]),
    ("SetInterval", ["uint64:500000"]),
    ("Pause", []),
    ("Resume", []),
    ("SetDomainLimits", ["string:vm1", "uint64:%d" % (300 * MIB), "uint64:%d" % GIB, "uint32:200"]),
    ("SetDomainExcluded", ["string:vm2", "boolean:true"]),
    ("SetDomainLimitsPersistent", ["string:vm1", "uint64:%d" % (300 * MIB), "uint64:%d" % GIB, "uint32:200"]),
    ("SetDomainExcludedPersistent", ["string:vm2", "boolean:true"]),
    ("Reload", []),
]

SETTINGS = ("State", "IntervalUSec", "DomainThresholdBytes", "HostThresholdBytes", "HostBudgetBytes", "DryRun")
DOMAIN_SETTINGS = ("Status", "MinBytes", "MaxBytes", "Weight", "Excluded")


def interface_shape(xml_text, name):
    """The shape of one interface: methods, properties and signals, comparable with ==."""
    root = ET.fromstring(xml_text)
    iface = root.find(f"interface[@name='{name}']")
    if iface is None:
        return None

    def annotations(el):
        return {a.get("name"): a.get("value") for a in el.findall("annotation")}

    methods = {}
    for m in iface.findall("method"):
        methods[m.get("name")] = {
            "args": [(a.get("name"), a.get("type"), a.get("direction", "in")) for a in m.findall("arg")],
            "annotations": annotations(m),
        }
    properties = {}
    for p in iface.findall("property"):
        properties[p.get("name")] = {"type": p.get("type"), "access": p.get("access"),
                                     "annotations": annotations(p)}
    signals = {}
    for s in iface.findall("signal"):
        signals[s.get("name")] = {"args": [(a.get("name"), a.get("type")) for a in s.findall("arg")],
                                  "annotations": annotations(s)}
    return {"methods": methods, "properties": properties, "signals": signals}


class BusTestCase(unittest.TestCase):
    """A bus and a memcoordd per test."""

    system_like = True
    bus_kind = "system"
    daemon_args = ()
    autostart = True

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.bus = Bus(self.tmp, system_like=self.system_like)
        self.addCleanup(self.bus.stop)
        self.root = Client(self.bus)
        self.nobody = Client(self.bus, user="nobody")
        if self.autostart:
            self.daemon = self.start_daemon()

    def start_daemon(self, name="memcoordd", **kwargs):
        d = Daemon(self.tmp, self.bus, bus_kind=self.bus_kind, args=self.daemon_args, name=name, **kwargs)
        self.addCleanup(self._stop_daemon, d)
        d.wait_ready()
        return d

    def _stop_daemon(self, d):
        # Also when it exited on its own: its status and log are checked.
        try:
            d.stop()
        finally:
            self._show_log_on_failure(d)

    def _show_log_on_failure(self, d):
        outcome = getattr(self, "_outcome", None)
        if outcome is not None and not getattr(outcome, "success", True):
            sys.stderr.write(f"--- {d.log_path}\n{d.log_text()[-4000:]}\n")

    def monitor(self):
        m = Monitor(self.bus)
        self.addCleanup(m.stop)
        return m

    def settings(self, client=None):
        client = client or self.root
        props = client.get_all()
        return {k: props[k] for k in SETTINGS}

    def domain_settings(self):
        return {name: {k: v for k, v in self.root.get_all(domain_path(name), DOMAIN_IFACE).items()
                       if k in DOMAIN_SETTINGS} for name in NODE_GUESTS}

    def wait_ticks(self, n, timeout=30):
        start = self.root.get("TickCount")
        wait_for(lambda: self.root.get("TickCount") >= start + n, timeout, what=f"{n} more ticks")

    def assert_call_fails(self, client, error, method, *args):
        with self.assertRaises(CallError, msg=f"{method}{args} succeeded") as cm:
            client.call(method, *args)
        self.assertEqual(cm.exception.name, error, f"{method}{args}: {cm.exception.message}")
        return cm.exception


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv")
class ApiTest(BusTestCase):
    """The interface as published, and each method's effect."""

    def assert_same_shape(self, path, iface, xml_file):
        with open(os.path.join(SOURCE_ROOT, "dbus", xml_file)) as f:
            documented = interface_shape(f.read(), iface)
        published = interface_shape(self.root.introspect(path), iface)
        self.assertIsNotNone(published, f"{iface} is not published at {path}")
        for part in ("methods", "properties", "signals"):
            self.assertEqual(sorted(published[part]), sorted(documented[part]),
                             f"{iface}: the {part} differ from dbus/{xml_file}")
            for name in documented[part]:
                self.assertEqual(published[part][name], documented[part][name],
                                 f"{iface}: {part[:-1]} {name} differs from dbus/{xml_file}")

    def test_introspection_matches_manager_xml(self):
        self.assert_same_shape(MANAGER_PATH, MANAGER_IFACE, "org.memcoord1.Manager.xml")

    def test_introspection_matches_domain_xml(self):
        self.assert_same_shape(domain_path("vm1"), DOMAIN_IFACE, "org.memcoord1.Domain.xml")

    def test_one_domain_object_per_guest(self):
        expected_paths = sorted(domain_path(n) for n in NODE_GUESTS)
        tree = self.root.busctl("tree", "--list", "org.memcoord").split()
        self.assertEqual(sorted(p for p in tree if p.startswith("/org/memcoord/domain/")), expected_paths)

        rows = self.root.list_domains()
        self.assertEqual([r["name"] for r in rows], sorted(NODE_GUESTS), "ListDomains is sorted by name")
        for row in rows:
            name = row["name"]
            uuid, current_mib, max_mib, balloon = NODE_GUESTS[name]
            props = self.root.get_all(domain_path(name), DOMAIN_IFACE)
            self.assertEqual(row["path"], domain_path(name))
            self.assertEqual(props["Name"], name)
            self.assertEqual(props["UUID"], uuid)
            self.assertEqual(row["uuid"], uuid)
            self.assertEqual(props["Status"], "managed" if balloon else "no-balloon")
            self.assertEqual(row["status"], props["Status"])
            self.assertEqual(props["Weight"], 100)
            self.assertEqual(props["Excluded"], False)
            self.assertEqual(props["MinBytes"], 256 * MIB)
            if balloon:
                self.assertEqual(props["MaxBytes"], max_mib * MIB)
                self.assertEqual(row["maximum"], max_mib * MIB)
                # Claimed from at once; never below the floor, never above the start.
                self.assertLessEqual(props["ActualBytes"], current_mib * MIB)
                self.assertGreaterEqual(props["ActualBytes"], 256 * MIB)
                self.assertEqual(props["StatsAgeUSec"], 0, "the test driver's stamps are synthetic")
            else:
                self.assertEqual(props["StatsAgeUSec"], 2**64 - 1)
                self.assertEqual(row["stats_age"], 2**64 - 1)
                self.assertEqual(row["last_reason"], "")
                self.assertEqual(row["last_change"], 0)

    def test_noballoon_domain_reports_its_memory(self):
        # A guest without a balloon still holds its memory: 1024 MiB current and maximum.
        props = self.root.get_all(domain_path("vm-noballoon"), DOMAIN_IFACE)
        row = next(r for r in self.root.list_domains() if r["name"] == "vm-noballoon")
        self.assertEqual((props["ActualBytes"], props["MaxBytes"]), (GIB, GIB))
        self.assertEqual((row["actual"], row["maximum"]), (GIB, GIB))

    def test_manager_properties(self):
        props = self.root.get_all()
        self.assertEqual(props["LibvirtURI"], "test://" + os.environ["MC_NODE_XML"])
        self.assertEqual(props["Policy"], "adaptive")
        self.assertEqual(props["State"], "running")
        self.assertEqual(props["IntervalUSec"], 200000)
        self.assertEqual(props["DomainThresholdBytes"], 100 * MIB)
        self.assertEqual(props["HostThresholdBytes"], 200 * MIB)
        self.assertEqual(props["HostBudgetBytes"], 0)
        self.assertEqual(props["DryRun"], False)
        self.assertTrue(props["Version"])
        self.assertGreater(props["HostTotalBytes"], 0)
        self.assertGreater(props["HostFreeBytes"], 0)
        self.assertLessEqual(props["HostFreeBytes"], props["HostTotalBytes"])

    def test_set_domain_threshold(self):
        mon = self.monitor()
        mark = mon.mark()
        self.root.call("SetDomainThreshold", "uint64:157286400")
        self.assertEqual(self.root.get("DomainThresholdBytes"), 157286400)
        self.assertIsNotNone(mon.wait_properties_changed("DomainThresholdBytes", 157286400, since=mark),
                             "no PropertiesChanged for DomainThresholdBytes")

    def test_set_host_threshold(self):
        mon = self.monitor()
        mark = mon.mark()
        self.root.call("SetHostThreshold", "uint64:%d" % (300 * MIB))
        self.assertEqual(self.root.get("HostThresholdBytes"), 300 * MIB)
        self.assertIsNotNone(mon.wait_properties_changed("HostThresholdBytes", 300 * MIB, since=mark))

    def test_set_host_budget(self):
        mon = self.monitor()
        mark = mon.mark()
        # The guests hold more than 1 GiB together: over budget, everyone above T gives.
        self.root.call("SetHostBudget", "uint64:%d" % GIB)
        self.assertEqual(self.root.get("HostBudgetBytes"), GIB)
        self.assertIsNotNone(mon.wait_properties_changed("HostBudgetBytes", GIB, since=mark))
        crunch = mon.wait_signal("BalloonChanged", since=mark, timeout=20,
                                 where=lambda m: m["payload"]["data"][4] == "crunch-claim")
        self.assertIsNotNone(crunch, "no crunch-claim under a budget below what the guests hold")
        mark = mon.mark()
        self.root.call("SetHostBudget", "uint64:0")
        self.assertEqual(self.root.get("HostBudgetBytes"), 0)
        self.assertIsNotNone(mon.wait_properties_changed("HostBudgetBytes", 0, since=mark))

    def test_set_interval(self):
        mon = self.monitor()
        mark = mon.mark()
        self.root.call("SetInterval", "uint64:1000000")
        self.assertEqual(self.root.get("IntervalUSec"), 1000000)
        self.assertIsNotNone(mon.wait_properties_changed("IntervalUSec", 1000000, since=mark))
        # The new pace: ticks one second apart.
        first = mon.wait_signal("TickCompleted", since=mon.mark(), timeout=10)
        self.assertIsNotNone(first)
        since = mon.mark()
        wait_for(lambda: len(mon.signals("TickCompleted", since=since)) >= 3, 30, what="3 ticks")
        ticks = [first] + mon.signals("TickCompleted", since=since)[:3]
        mean = (ticks[-1]["timestamp-realtime"] - ticks[0]["timestamp-realtime"]) / 1e6 / 3
        self.assertGreaterEqual(mean, 0.95, f"ticks {mean:.3f} s apart at a 1 s interval")

    def test_tick_completed_every_interval(self):
        mon = self.monitor()
        since = mon.mark()
        wait_for(lambda: len(mon.signals("TickCompleted", since=since)) >= 11, 60, what="11 ticks")
        ticks = mon.signals("TickCompleted", since=since)[:11]
        numbers = [t["payload"]["data"][0] for t in ticks]
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + 11)), "tick numbers run on by one")
        for t in ticks:
            tick, host_free, managed, changed = t["payload"]["data"]
            self.assertEqual(managed, 3)
            self.assertGreater(host_free, 0)
        gaps = sorted((b["timestamp-realtime"] - a["timestamp-realtime"]) / 1e6 for a, b in zip(ticks, ticks[1:]))
        median = (gaps[4] + gaps[5]) / 2
        # On a busy machine a tick may come late, and the fixed-rate timer shortens the next
        # gap to catch up: the median of ten gaps stays at the interval.
        self.assertGreaterEqual(median, 0.18, f"ticks {gaps} s apart at a 0.2 s interval")
        self.assertLessEqual(median, 0.23, f"ticks {gaps} s apart at a 0.2 s interval")

    def test_pause_and_resume(self):
        mon = self.monitor()
        mark = mon.mark()
        self.root.call("Pause")
        self.assertEqual(self.root.get("State"), "paused")
        self.assertIsNotNone(mon.wait_properties_changed("State", "paused", since=mark))
        paused_at = mon.mark()
        # Work to do: a lower threshold lets every guest give more.
        self.root.call("SetDomainThreshold", "uint64:%d" % (20 * MIB))
        # The last change made before the pause shows in the first paused tick's reading.
        since = mon.mark()
        wait_for(lambda: len(mon.signals("TickCompleted", since=since)) >= 1, 30, what="a tick")
        before = {r["name"]: r["actual"] for r in self.root.list_domains()}
        wait_for(lambda: len(mon.signals("TickCompleted", since=since)) >= 5, 30, what="4 more ticks")
        self.assertEqual(mon.signals("BalloonChanged", since=paused_at), [], "a balloon moved while paused")
        for t in mon.signals("TickCompleted", since=paused_at):
            self.assertEqual(t["payload"]["data"][3], 0, "a paused tick changed something")
            self.assertEqual(t["payload"]["data"][2], 3, "stats are still read while paused")
        self.assertEqual({r["name"]: r["actual"] for r in self.root.list_domains()}, before)
        self.assertEqual(self.root.get("State"), "paused")

        mark = mon.mark()
        self.root.call("Resume")
        self.assertEqual(self.root.get("State"), "running")
        self.assertIsNotNone(mon.wait_properties_changed("State", "running", since=mark))
        self.assertIsNotNone(mon.wait_signal("BalloonChanged", since=mark, timeout=20),
                             "no balloon moved after Resume")

    def test_set_domain_limits(self):
        mon = self.monitor()
        mark = mon.mark()
        self.root.call("SetDomainLimits", "string:vm1", "uint64:%d" % (300 * MIB), "uint64:%d" % GIB,
                       "uint32:200")
        props = self.root.get_all(domain_path("vm1"), DOMAIN_IFACE)
        self.assertEqual((props["MinBytes"], props["MaxBytes"], props["Weight"]), (300 * MIB, GIB, 200))
        row = next(r for r in self.root.list_domains() if r["name"] == "vm1")
        self.assertEqual((row["min"], row["max"], row["weight"]), (300 * MIB, GIB, 200))
        self.assertIsNotNone(mon.wait_properties_changed("Weight", 200, since=mark, path=domain_path("vm1")),
                             "no PropertiesChanged on vm1's object")

        # By UUID too; zeros bring the defaults back.
        self.root.call("SetDomainLimits", "string:" + NODE_GUESTS["vm1"][0], "uint64:0", "uint64:0", "uint32:0")
        props = self.root.get_all(domain_path("vm1"), DOMAIN_IFACE)
        self.assertEqual((props["MinBytes"], props["MaxBytes"], props["Weight"]), (256 * MIB, 2 * GIB, 100))

    def test_set_domain_excluded(self):
        mon = self.monitor()
        mark = mon.mark()
        self.root.call("SetDomainExcluded", "string:vm2", "boolean:true")
        props = self.root.get_all(domain_path("vm2"), DOMAIN_IFACE)
        self.assertEqual((props["Status"], props["Excluded"]), ("excluded", True))
        self.assertIsNotNone(mon.wait_properties_changed("Status", "excluded", since=mark, path=domain_path("vm2")))
        excluded_at = mon.mark()
        # Give the others work; vm2 must not move.
        self.root.call("SetDomainThreshold", "uint64:%d" % (20 * MIB))
        wait_for(lambda: len(mon.signals("TickCompleted", since=excluded_at)) >= 4, 30, what="4 ticks")
        moved = [m["payload"]["data"][1] for m in mon.signals("BalloonChanged", since=excluded_at)]
        self.assertNotIn("vm2", moved)
        self.assertTrue(moved, "the other guests did not move either")
        self.assertEqual(self.root.get("Status", domain_path("vm2"), DOMAIN_IFACE), "excluded")
        for t in mon.signals("TickCompleted", since=excluded_at):
            self.assertLessEqual(t["payload"]["data"][2], 2, "an excluded guest counted as managed")

        self.root.call("SetDomainExcluded", "string:vm2", "boolean:false")
        wait_for(lambda: self.root.get("Status", domain_path("vm2"), DOMAIN_IFACE) == "managed", 10,
                 what="vm2 managed again")
        self.assertEqual(self.root.get("Excluded", domain_path("vm2"), DOMAIN_IFACE), False)

    def test_reload(self):
        with open(self.daemon.config, "w") as f:
            f.write("[Coordinator]\nDomainThreshold=120M\nHostThreshold=250M\nIntervalSec=0.5\n")
        mon = self.monitor()
        mark = mon.mark()
        self.root.call("Reload")
        self.assertEqual(self.root.get("DomainThresholdBytes"), 120 * MIB)
        self.assertEqual(self.root.get("HostThresholdBytes"), 250 * MIB)
        # --interval 0.2 is on the command line: it wins over the file across reloads too.
        self.assertEqual(self.root.get("IntervalUSec"), 200000)
        self.assertIsNotNone(mon.wait_properties_changed("DomainThresholdBytes", 120 * MIB, since=mark))

        # A broken file is refused and the settings stay.
        with open(self.daemon.config, "w") as f:
            f.write("[Coordinator]\nDomainThreshold=lots\n")
        with self.assertRaises(CallError) as cm:
            self.root.call("Reload")
        self.assertTrue(cm.exception.name.startswith("org.memcoord.Error."), cm.exception.name)
        self.assertIn("memcoord.conf:2:", cm.exception.message)
        self.assertEqual(self.root.get("DomainThresholdBytes"), 120 * MIB)

    def test_settings_survive_restart(self):
        # The interval comes from the config file here: on the command line it would win over
        # the state file, by design (main.c: config file, state file, command line).
        self.daemon.stop()
        self.daemon = self.start_daemon(name="memcoordd-config", interval=None,
                                        config=self.tmp.join("interval.conf"),
                                        config_text="[Coordinator]\nIntervalSec=0.2\n")
        self.assertEqual(self.root.get("IntervalUSec"), 200000)
        self.root.call("SetDomainThreshold", "uint64:157286400")
        self.root.call("SetHostThreshold", "uint64:%d" % (300 * MIB))
        self.root.call("SetHostBudget", "uint64:%d" % (8 * GIB))
        self.root.call("SetInterval", "uint64:300000")
        self.root.call("SetDomainLimits", "string:vm1", "uint64:%d" % (300 * MIB), "uint64:%d" % GIB, "uint32:200")
        self.root.call("SetDomainExcluded", "string:vm2", "boolean:true")
        settings = self.settings()
        domains = self.domain_settings()
        self.assertTrue(os.path.exists(os.path.join(self.daemon.state_dir, "state.conf")))

        self.assertEqual(self.daemon.stop(), 0)
        self.daemon = self.start_daemon(name="memcoordd-again", interval=None, config=self.daemon.config)
        self.assertEqual(self.settings(), settings)
        self.assertEqual(self.domain_settings(), domains)
        self.assertEqual(self.root.get("Status", domain_path("vm2"), DOMAIN_IFACE), "excluded")

    def test_second_instance_refused(self):
        second = Daemon(self.tmp, self.bus, args=self.daemon_args, state_dir=self.tmp.join("state2"),
                        name="memcoordd-second")
        try:
            status = second.proc.wait(60)
        except Exception:
            raise AssertionError("a second memcoordd kept running on the same bus")
        finally:
            second.stop(expect=None)
        log = second.log_text()
        self.assertNotEqual(status, 0)
        self.assertEqual(len(log.strip().splitlines()), 1, f"not one line: {log!r}")
        self.assertIn("org.memcoord", log)
        self.assertRegex(log, r"already owned|another memcoordd|in use")
        # The first one is unharmed.
        self.assertIsNone(self.daemon.proc.poll())
        self.wait_ticks(2)

    def test_balloon_changed_matches_state(self):
        mon = self.monitor()
        since = mon.mark()
        self.root.call("SetDomainThreshold", "uint64:%d" % (20 * MIB))
        sig = mon.wait_signal("BalloonChanged", since=since, timeout=20)
        self.assertIsNotNone(sig)
        path, name, frm, to, reason = sig["payload"]["data"]
        self.assertEqual(path, domain_path(name))
        self.assertEqual(reason, "claim")
        # The claim rule with T = 20 MiB, on the test driver's unused = actual / 2.
        self.assertEqual(to // 1024, claim_target_kib(frm // 1024, frm // 2048, t_kib=20 * 1024))
        # The balloon lands on what was signalled (the test driver applies it at once).
        wait_for(lambda: any(r["name"] == name and r["last_reason"] == "claim" and r["last_change"] > 0
                             for r in self.root.list_domains()), 10, what="ListDomains to show the change")


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv")
class PolicyTest(BusTestCase):
    """The system-like bus with dbus/org.memcoord.conf: nobody reads; nobody's changes reach the
    daemon, which denies them (no polkit on this bus); only root changes."""

    def test_nobody_can_read(self):
        self.assertEqual(self.nobody.get("State"), "running")
        props = self.nobody.get_all()
        self.assertEqual(props["DomainThresholdBytes"], 100 * MIB)
        rows = self.nobody.list_domains()
        self.assertEqual(sorted(r["name"] for r in rows), sorted(NODE_GUESTS))
        self.assertEqual(self.nobody.get("Name", domain_path("vm1"), DOMAIN_IFACE), "vm1")
        self.assertIn("org.memcoord1.Manager", self.nobody.introspect(MANAGER_PATH))
        self.nobody.busctl("call", "org.memcoord", MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping")
        objects = self.nobody.busctl("--json=short", "call", "org.memcoord", MANAGER_PATH,
                                     "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
        for name in NODE_GUESTS:
            self.assertIn(domain_path(name), objects)

    def test_nobody_cannot_change_anything(self):
        self.root.call("Pause")   # so that Resume would be a change
        settings = self.settings()
        domains = self.domain_settings()
        for method, args in MUTATING_CALLS:
            with self.subTest(method=method):
                e = self.assert_call_fails(self.nobody, ACCESS_DENIED, method, *args)
                # The bus lets the call through; the daemon's gate denies it (no polkit here).
                self.assertIn("needs root or the polkit action org.memcoord.manage", e.message)
        self.assertEqual(self.settings(), settings)
        self.assertEqual(self.domain_settings(), domains)
        # Setting a property directly is no way around it.
        r = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "busctl",
                 "--address=" + self.bus.address, "set-property", "org.memcoord", MANAGER_PATH, MANAGER_IFACE,
                 "DomainThresholdBytes", "t", "157286400"])
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(self.settings(), settings)

    def test_nobody_cannot_own_the_name(self):
        # The policy file lets root alone own org.memcoord.
        r = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "dbus-send", "--system",
                 "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                 "org.freedesktop.DBus.RequestName", "string:org.memcoord", "uint32:4"],
                env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(ACCESS_DENIED, r.stderr)

    def test_invalid_arguments_change_nothing(self):
        mon = self.monitor()
        mark = mon.mark()
        settings = self.settings()
        domains = self.domain_settings()
        host_total = self.root.get("HostTotalBytes")
        cases = [
            (INVALID_ARGUMENT, "SetDomainThreshold", ["uint64:0"]),
            (INVALID_ARGUMENT, "SetDomainThreshold", ["uint64:%d" % (2 * TIB)]),
            (INVALID_ARGUMENT, "SetInterval", ["uint64:0"]),
            (INVALID_ARGUMENT, "SetInterval", ["uint64:%d" % (2 * 3600 * 10**6)]),
            (INVALID_ARGUMENT, "SetHostThreshold", ["uint64:%d" % host_total]),
            (INVALID_ARGUMENT, "SetHostBudget", ["uint64:%d" % (255 * MIB)]),
            (INVALID_ARGUMENT, "SetDomainLimits", ["string:vm1", "uint64:%d" % GIB, "uint64:%d" % (512 * MIB),
                                                   "uint32:0"]),
            (INVALID_ARGUMENT, "SetDomainLimits", ["string:vm1", "uint64:0", "uint64:0", "uint32:10001"]),
            # A max below the floor: the default minimum (256M), or the guest's own.
            (INVALID_ARGUMENT, "SetDomainLimits", ["string:vm1", "uint64:0", "uint64:512", "uint32:0"]),
            (INVALID_ARGUMENT, "SetDomainLimits", ["string:vm1", "uint64:0", "uint64:%d" % (200 * MIB), "uint32:0"]),
            (INVALID_ARGUMENT, "SetDomainLimits", ["string:vm1", "uint64:%d" % (300 * MIB),
                                                   "uint64:%d" % (299 * MIB), "uint32:0"]),
            (NO_SUCH_DOMAIN, "SetDomainLimits", ["string:no-such-vm", "uint64:0", "uint64:0", "uint32:0"]),
            (NO_SUCH_DOMAIN, "SetDomainExcluded", ["string:no-such-vm", "boolean:true"]),
        ]
        for error, method, args in cases:
            with self.subTest(method=method, args=args):
                e = self.assert_call_fails(self.root, error, method, *args)
                self.assertTrue(e.message, "an error without a message")
        self.assertEqual(self.settings(), settings)
        self.assertEqual(self.domain_settings(), domains)
        self.assertFalse(os.path.exists(os.path.join(self.daemon.state_dir, "state.conf")),
                         "a refused call wrote the state file")
        self.wait_ticks(1)
        changed = [m for m in mon.signals("PropertiesChanged", since=mark)
                   if set(m["payload"]["data"][1]) & set(SETTINGS + DOMAIN_SETTINGS)]
        self.assertEqual(changed, [], "a refused call announced a change")

    def test_invalid_budget_one_byte(self):
        # SetHostBudget: "at least 256 MiB, or 0 for none". One byte is neither.
        self.assert_call_fails(self.root, INVALID_ARGUMENT, "SetHostBudget", "uint64:1")
        self.assertEqual(self.root.get("HostBudgetBytes"), 0)

    def test_threshold_bounds(self):
        # SetDomainThreshold: 1 MiB < bytes <= 1 TiB.
        self.assert_call_fails(self.root, INVALID_ARGUMENT, "SetDomainThreshold", "uint64:%d" % MIB)
        self.root.call("SetDomainThreshold", "uint64:%d" % TIB)
        self.assertEqual(self.root.get("DomainThresholdBytes"), TIB)
        self.root.call("SetDomainThreshold", "uint64:%d" % (MIB + 1024))
        self.assertEqual(self.root.get("DomainThresholdBytes"), MIB + 1024)

    def test_sizes_bounded(self):
        # Manager.xml: a size above 4 PiB is refused whatever the method. Unbounded,
        # SetHostBudget(UINT64_MAX) was saved as a size the state file's parser rejects.
        u64_max = "uint64:%d" % (2**64 - 1)
        over = "uint64:%d" % (2**52 + 1)
        cases = [
            ("SetHostBudget", [u64_max]),
            ("SetHostBudget", [over]),
            ("SetHostThreshold", [u64_max]),
            ("SetDomainThreshold", [u64_max]),
            ("SetDomainLimits", ["string:vm1", "uint64:0", u64_max, "uint32:0"]),
            ("SetDomainLimits", ["string:vm1", "uint64:0", over, "uint32:0"]),
            ("SetDomainLimits", ["string:vm1", u64_max, "uint64:0", "uint32:0"]),
            ("SetDomainLimitsPersistent", ["string:vm1", "uint64:0", over, "uint32:0"]),
            ("SetDomainLimitsPersistent", ["string:vm1", u64_max, "uint64:0", "uint32:0"]),
        ]
        settings = self.settings()
        domains = self.domain_settings()
        for method, args in cases:
            with self.subTest(method=method, args=args):
                self.assert_call_fails(self.root, INVALID_ARGUMENT, method, *args)
        self.assertEqual(self.settings(), settings)
        self.assertEqual(self.domain_settings(), domains)
        self.assertFalse(os.path.exists(os.path.join(self.daemon.state_dir, "state.conf")))

        # At the bound: accepted, saved, and loaded again by the next start.
        self.root.call("SetHostBudget", "uint64:%d" % 2**52)
        self.root.call("SetDomainLimits", "string:vm1", "uint64:0", "uint64:%d" % 2**52, "uint32:0")
        self.assertEqual(self.root.get("HostBudgetBytes"), 2**52)
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon = self.start_daemon(name="memcoordd-again", config=self.daemon.config)
        self.assertEqual(self.root.get("HostBudgetBytes"), 2**52)

    def test_threshold_above_one_tib_refused(self):
        # 1 TiB and one byte is above the documented bound; it must not be taken as 1 TiB.
        self.assert_call_fails(self.root, INVALID_ARGUMENT, "SetDomainThreshold", "uint64:%d" % (TIB + 1))
        self.assertEqual(self.root.get("DomainThresholdBytes"), 100 * MIB)


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv")
class DaemonGateTest(BusTestCase):
    """A permissive bus without any policy: the daemon's own gate (daemon/auth.c) decides."""

    system_like = False
    bus_kind = "session"

    def test_nobody_denied_by_the_daemon(self):
        self.root.call("Pause")
        settings = self.settings()
        domains = self.domain_settings()
        for method, args in MUTATING_CALLS:
            with self.subTest(method=method):
                e = self.assert_call_fails(self.nobody, ACCESS_DENIED, method, *args)
                # The daemon's words, not the bus's.
                self.assertIn("needs root or the polkit action org.memcoord.manage", e.message)
        self.assertEqual(self.settings(), settings)
        self.assertEqual(self.domain_settings(), domains)

    def test_nobody_reads_through_the_gate(self):
        rows = self.nobody.list_domains()
        self.assertEqual(sorted(r["name"] for r in rows), sorted(NODE_GUESTS))
        self.assertEqual(self.nobody.get("State"), "running")

    def test_root_allowed_by_the_daemon(self):
        self.root.call("SetDomainThreshold", "uint64:157286400")
        self.assertEqual(self.root.get("DomainThresholdBytes"), 157286400)


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv")
class DryRunTest(BusTestCase):
    """memcoordd --dry-run: decisions are signalled but not applied."""

    daemon_args = ("--dry-run",)

    def test_dry_run_changes_nothing(self):
        self.assertEqual(self.root.get("DryRun"), True)
        before = {r["name"]: r["actual"] for r in self.root.list_domains()}
        for name, (_, current_mib, _, balloon) in NODE_GUESTS.items():
            if balloon:
                self.assertEqual(before[name], current_mib * MIB)
        self.wait_ticks(5)
        self.assertEqual({r["name"]: r["actual"] for r in self.root.list_domains()}, before)
        for row in self.root.list_domains():
            self.assertEqual(row["last_change"], 0)

    def test_dry_run_signals_decisions(self):
        # org.memcoord1.Manager.xml, DryRun: "decisions are logged and signalled as usual".
        mon = self.monitor()
        since = mon.mark()
        sig = mon.wait_signal("BalloonChanged", since=since, timeout=10)
        self.assertIsNotNone(sig, "no BalloonChanged in dry-run mode")
        path, name, frm, to, reason = sig["payload"]["data"]
        self.assertEqual(reason, "claim")
        self.assertEqual(frm, NODE_GUESTS[name][1] * MIB)

MEMCOORDCTL = os.environ.get("MEMCOORDCTL", "")
TAB_NAME = "tab\tvm"
TAB_UUID = "6695eb01-f6a4-8304-79aa-97f2502e19a1"


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv")
class StateTest(BusTestCase):
    """The state file: what it keeps, what it does when it does not load, the command line
    over both files across a reload."""

    autostart = False

    def state_path(self):
        return self.tmp.join("state", "state.conf")

    def write(self, path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def read_state(self):
        with open(self.state_path()) as f:
            return f.read()

    def start(self, name, config_text="[Coordinator]\n", interval=None, args=(), **kwargs):
        config = self.tmp.join("memcoord.conf")
        self.write(config, config_text)
        d = Daemon(self.tmp, self.bus, args=tuple(args), name=name, interval=interval, config=config, **kwargs)
        self.addCleanup(self._stop_daemon, d)
        d.wait_ready()
        return d

    def assert_set_aside(self, d, bad_text):
        aside = [f for f in os.listdir(self.tmp.join("state")) if f.startswith("state.conf.bad-")]
        self.assertEqual(len(aside), 1, os.listdir(self.tmp.join("state")))
        with open(self.tmp.join("state", aside[0])) as f:
            self.assertEqual(f.read(), bad_text)
        self.assertFalse(os.path.exists(self.state_path()))
        log = d.log_text()
        self.assertIn("Ignoring the saved settings", log)
        self.assertIn(aside[0], log)

    def test_state_made_invalid_by_the_config_is_set_aside(self):
        # DomainThreshold=10M was set at run time; later the admin raised DeadBand to 20M.
        bad = "[Coordinator]\nDomainThreshold=10240K\n"
        self.write(self.state_path(), bad)
        d = self.start("memcoordd-bad-threshold", "[Coordinator]\nDeadBand=20M\nIntervalSec=0.2\n")
        self.assert_set_aside(d, bad)
        self.assertEqual(self.root.get("DomainThresholdBytes"), 100 * MIB)
        # A change at run time writes a fresh state file.
        self.root.call("SetHostThreshold", "uint64:%d" % (300 * MIB))
        self.assertEqual(self.read_state().count("="), 1, self.read_state())
        self.assertIn("HostThreshold=307200K", self.read_state())

    def test_state_with_a_size_the_parser_rejects_is_set_aside(self):
        # What SetHostBudget(UINT64_MAX) used to save.
        bad = "[Coordinator]\nHostBudget=18014398509481983K\n"
        self.write(self.state_path(), bad)
        d = self.start("memcoordd-bad-size", "[Coordinator]\nIntervalSec=0.2\n")
        self.assert_set_aside(d, bad)
        self.assertEqual(self.root.get("HostBudgetBytes"), 0)

    def test_only_runtime_keys_are_kept(self):
        self.start("memcoordd-1", "[Coordinator]\nIntervalSec=0.2\nDomainThreshold=150M\n")
        self.root.call("SetInterval", "uint64:300000")
        state = self.read_state()
        self.assertIn("IntervalSec=0.300000", state)
        self.assertNotIn("DomainThreshold", state)
        self.assertNotIn("HostThreshold", state)
        self.assertNotIn("[Domain", state)

        # The admin edits the other keys: Reload takes them, the interval set at run time stays.
        self.write(self.tmp.join("memcoord.conf"),
                   "[Coordinator]\nIntervalSec=0.2\nDomainThreshold=120M\nHostThreshold=250M\n")
        self.root.call("Reload")
        self.assertEqual(self.root.get("DomainThresholdBytes"), 120 * MIB)
        self.assertEqual(self.root.get("HostThresholdBytes"), 250 * MIB)
        self.assertEqual(self.root.get("IntervalUSec"), 300000)

    def test_command_line_wins_across_reload(self):
        # --dry-run --interval 10 over a config file that says DryRun=false and 0.2 s.
        d = self.start("memcoordd-cmdline", "[Coordinator]\nDryRun=false\nIntervalSec=0.2\n",
                       interval="10", args=("--dry-run",))
        before = {r["name"]: r["actual"] for r in self.root.list_domains()}
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "Settings reloaded" in d.log_text(), 10, what="the reload")
        self.assertEqual(self.root.get("DryRun"), True)
        self.assertEqual(self.root.get("IntervalUSec"), 10 * 1000000)
        ticks = self.root.get("TickCount")
        wait_for(lambda: self.root.get("TickCount") > ticks, 30, what="a tick after the reload")
        self.assertEqual({r["name"]: r["actual"] for r in self.root.list_domains()}, before)
        for row in self.root.list_domains():
            self.assertEqual(row["last_change"], 0, f"{row['name']} moved")

    def test_pause_survives_restart(self):
        d = self.start("memcoordd-pause", "[Coordinator]\nIntervalSec=0.2\n")
        self.root.call("Pause")
        self.assertIn("Paused=true", self.read_state())
        self.assertEqual(d.stop(), 0)
        self.start("memcoordd-pause-again", "[Coordinator]\nIntervalSec=0.2\nDomainThreshold=20M\n")
        self.assertEqual(self.root.get("State"), "paused")
        self.wait_ticks(3)
        for row in self.root.list_domains():
            self.assertEqual(row["last_change"], 0, f"{row['name']} moved while paused")
        self.root.call("Resume")
        self.assertIn("Paused=false", self.read_state())

    def test_name_with_a_tab_is_saved(self):
        with open(NODE_XML) as f:
            xml = f.read()
        guest = (f"<domain type='test'><name>tab&#9;vm</name><uuid>{TAB_UUID}</uuid>"
                 "<memory unit='MiB'>1024</memory><currentMemory unit='MiB'>1024</currentMemory>"
                 "<vcpu>1</vcpu><os><type>hvm</type></os><devices><memballoon model='virtio'/></devices>"
                 "</domain>\n</node>")
        node = self.tmp.join("node.xml")
        self.write(node, xml.replace("</node>", guest))
        args = ("--connect", "test://" + node)
        d = self.start("memcoordd-tab", "[Coordinator]\nIntervalSec=0.2\n", args=args)
        path = path_encode(DOMAIN_PREFIX, TAB_UUID)
        self.assertEqual(self.root.get("Name", path, DOMAIN_IFACE), TAB_NAME)
        self.assertTrue(MEMCOORDCTL, "MEMCOORDCTL (memcoordctl's path) is not set")
        out = open(self.tmp.join("monitor.out"), "w")
        monitor = spawn([MEMCOORDCTL, "monitor"], stdout=out, stderr=subprocess.STDOUT,
                        env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address))
        self.addCleanup(out.close)
        self.addCleanup(kill_group, monitor)
        time.sleep(1)  # subscribed before the change
        self.root.call("SetDomainLimits", "string:" + TAB_NAME, "uint64:%d" % (300 * MIB), "uint64:0",
                       "uint32:250")

        def monitor_text():
            with open(self.tmp.join("monitor.out"), errors="replace") as f:
                return f.read()
        wait_for(lambda: "Weight: 250" in monitor_text(), 10, what="monitor to show the change")
        # memcoordctl monitor prints the name escaped, on one line.
        line = next(ln for ln in monitor_text().splitlines() if "Weight: 250" in ln)
        self.assertIn("tab\\tvm: Weight: 250", line)
        self.assertNotIn("\t", monitor_text())
        self.assertIn("[Domain tab%09vm]", self.read_state())
        # The log shows the name escaped: a control character cannot start a line of its own.
        self.assertIn("tab\\tvm: now watched", d.log_text())
        self.assertNotIn(TAB_NAME, d.log_text())
        self.assertEqual(d.stop(), 0)
        self.start("memcoordd-tab-again", "[Coordinator]\nIntervalSec=0.2\n", args=args)
        props = self.root.get_all(path, DOMAIN_IFACE)
        self.assertEqual((props["MinBytes"], props["Weight"]), (300 * MIB, 250))


if __name__ == "__main__":
    mctest_main()
