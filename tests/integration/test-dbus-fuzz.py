#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Random calls to memcoordd on the simulator: every method of org.memcoord1.Manager with
random and boundary arguments, from root and from nobody, then the invariants: memcoordd is
alive and answers, every reply was a result or a known error, nothing nobody sent changed
anything, and the state is still valid (the settings the policy accepts, every guest's
figures). The seed is printed; MC_FUZZ_SEED and MC_FUZZ_CALLS repeat or widen a run.
"""

import os
import random
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mctest as M  # noqa: E402

SCENARIO = os.path.join(M.SOURCE_ROOT, "tests", "sim", "demo.ini")
CALLS = int(os.environ.get("MC_FUZZ_CALLS", "1000"))
SEED = int(os.environ.get("MC_FUZZ_SEED", str(random.SystemRandom().randrange(1 << 32))))

KNOWN_ERRORS = {
    "org.memcoord.Error.InvalidArgument",
    "org.memcoord.Error.NoSuchDomain",
    "org.memcoord.Error.NotConnected",
    "org.memcoord.Error.BadConfig",
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.freedesktop.DBus.Error.InvalidArgs",
    "org.freedesktop.DBus.Error.NotSupported",
}
SIZES = [0, 1, 1023, 1024, 4096, 100 << 20, 256 << 20, 1 << 30, (1 << 32) - 1, 1 << 32, 1 << 40,
         (1 << 52) - 1, 1 << 52, (1 << 52) + 1, 1 << 63, (1 << 64) - 1]
USECS = [0, 1, 99999, 100000, 1000000, 3600 * 10**6, 3600 * 10**6 + 1, (1 << 64) - 1]
WEIGHTS = [0, 1, 100, 10000, 10001, (1 << 32) - 1]
GUESTS = ["demo-1", "demo-2", "demo-3"]

SETTINGS = ["IntervalUSec", "DomainThresholdBytes", "HostThresholdBytes", "HostBudgetBytes", "DryRun",
            "Policy", "State"]
DOMAIN_SETTINGS = ["MinBytes", "MaxBytes", "Weight", "Excluded"]


def rand_size(r):
    return r.choice(SIZES) if r.random() < 0.6 else r.randrange(1 << r.choice([10, 20, 30, 40, 64]))


def rand_name(r):
    roll = r.random()
    if roll < 0.6:
        return r.choice(GUESTS)
    if roll < 0.7:
        return ""
    if roll < 0.8:
        return "x" * r.choice([1, 255, 4096])
    # Any text D-Bus carries: valid UTF-8, no NUL.
    alphabet = "ab-_.:/[]=#%\t\n\r é\u202e\u2028€"
    return "".join(r.choice(alphabet) for _ in range(r.randrange(1, 24)))


def rand_call(r):
    m = r.choice(["SetDomainThreshold", "SetHostThreshold", "SetHostBudget", "SetInterval", "Pause", "Resume",
                  "SetDomainLimits", "SetDomainExcluded", "SetDomainLimitsPersistent",
                  "SetDomainExcludedPersistent", "Reload", "ListDomains"])
    if m in ("SetDomainThreshold", "SetHostThreshold", "SetHostBudget"):
        return m, [f"uint64:{rand_size(r)}"]
    if m == "SetInterval":
        return m, [f"uint64:{r.choice(USECS) if r.random() < 0.7 else r.randrange(1 << 40)}"]
    if m in ("SetDomainLimits", "SetDomainLimitsPersistent"):
        return m, [f"string:{rand_name(r)}", f"uint64:{rand_size(r)}", f"uint64:{rand_size(r)}",
                   f"uint32:{r.choice(WEIGHTS)}"]
    if m in ("SetDomainExcluded", "SetDomainExcludedPersistent"):
        return m, [f"string:{rand_name(r)}", f"boolean:{r.choice(['true', 'false'])}"]
    return m, []


@M.require_root
class DbusFuzzTest(unittest.TestCase):
    def setUp(self):
        self.tmp = M.TempDir("mc-fuzz-")
        self.addCleanup(self.tmp.cleanup)
        self.bus = M.Bus(self.tmp)
        self.addCleanup(self.bus.stop)
        self.daemon = M.Daemon(self.tmp, self.bus, args=["--connect", "sim:" + SCENARIO, "--sim-speed", "10"])
        self.addCleanup(lambda: self.daemon.stop() if self.daemon.status is None else None)
        self.daemon.wait_ready()
        self.root = M.Client(self.bus)
        self.nobody = M.Client(self.bus, user="nobody")

    def snapshot(self):
        props = self.root.get_all()
        doms = {}
        for name in GUESTS:
            d = self.root.get_all(M.path_encode("/org/memcoord/domain", uuid_of(self.root, name)), M.DOMAIN_IFACE)
            doms[name] = {k: d[k] for k in DOMAIN_SETTINGS}
        return {k: props[k] for k in SETTINGS}, doms

    def call(self, client, method, args, who, tally):
        try:
            client.call(method, *args)
            tally["ok"] += 1
            return None
        except M.CallError as e:
            self.assertIn(e.name, KNOWN_ERRORS, f"{who} {method} {args}: unknown error {e.name}: {e.message}")
            self.assertTrue(e.message, f"{who} {method} {args}: an error without a message")
            tally[e.name] = tally.get(e.name, 0) + 1
            return e.name

    def test_random_calls(self):
        print(f"seed {SEED}, {CALLS} calls from root and {CALLS} from nobody", file=sys.stderr)
        r = random.Random(SEED)
        tally_root, tally_nobody = {"ok": 0}, {"ok": 0}

        # nobody first: nothing it sends may change anything.
        before = self.snapshot()
        for _ in range(CALLS):
            method, args = rand_call(r)
            err = self.call(self.nobody, method, args, "nobody", tally_nobody)
            if method != "ListDomains":
                self.assertEqual(err, "org.freedesktop.DBus.Error.AccessDenied",
                                 f"nobody's {method} {args} was not denied")
        self.assertEqual(self.snapshot(), before, "a call from nobody changed something")
        self.assertFalse(os.path.exists(os.path.join(self.daemon.state_dir, "state.conf")),
                         "a call from nobody wrote the state file")

        # Then root: anything goes, within what each method accepts.
        for _ in range(CALLS):
            method, args = rand_call(r)
            self.call(self.root, method, args, "root", tally_root)
        print(f"nobody: {tally_nobody}\nroot: {tally_root}", file=sys.stderr)
        self.assertGreater(tally_root["ok"], CALLS // 10, "hardly any of root's calls went through")

        # Still alive, every figure readable and the settings valid.
        props = self.root.get_all()
        self.assertGreater(props["DomainThresholdBytes"], 0)
        self.assertLessEqual(props["DomainThresholdBytes"], 1 << 40)
        self.assertLessEqual(props["HostThresholdBytes"], 1 << 40)
        self.assertTrue(100000 <= props["IntervalUSec"] <= 3600 * 10**6, props["IntervalUSec"])
        self.assertIn(props["State"], ("running", "paused"))
        for row in self.root.list_domains():
            self.assertLessEqual(row["min"], max(row["max"], row["min"]))
            self.assertTrue(1 <= row["weight"] <= 10000, row)
        # Still ticking, at a short interval again: root's calls may have left it at an hour.
        self.root.call("SetInterval", "uint64:1000000")
        self.root.call("Resume")
        ticks = self.root.get("TickCount")
        M.wait_for(lambda: self.root.get("TickCount") > ticks + 2, 30, what="ticks after the calls")
        props = self.root.get_all()
        # The state file, if any, loads: a restart on it keeps the settings.
        self.daemon.stop()
        settings = {k: props[k] for k in ("IntervalUSec", "DomainThresholdBytes", "HostThresholdBytes",
                                          "HostBudgetBytes")}
        self.daemon = M.Daemon(self.tmp, self.bus, name="memcoordd-again", interval=None,
                               args=["--connect", "sim:" + SCENARIO, "--sim-speed", "10"])
        self.daemon.wait_ready()
        again = self.root.get_all()
        self.assertEqual({k: again[k] for k in settings}, settings, "the saved settings did not come back")
        self.assertNotIn("set aside", self.daemon.log_text())


def uuid_of(client, name):
    for row in client.list_domains():
        if row["name"] == name:
            return row["uuid"]
    raise AssertionError(f"no guest {name}")


if __name__ == "__main__":
    M.main()
