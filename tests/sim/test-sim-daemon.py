#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""memcoordd on the simulator, as a user would run it: a private session dbus-daemon,
`memcoordd --connect sim:SCENARIO --bus session --sim-speed 10`, and `memcoordctl --user`.
No root, no libvirtd, no QEMU: run as root, the daemon and the client are switched to nobody
(setpriv) to show that nothing here needs privileges.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import mctest as M  # noqa: E402

MEMCOORDCTL = os.environ.get("MEMCOORDCTL", "")
SCENARIO = os.path.join(M.SOURCE_ROOT, "tests", "sim", "demo.ini")
SPEED = 10


class SimDaemonTest(unittest.TestCase):
    def setUp(self):
        for tool in ("dbus-daemon",):
            if not shutil.which(tool):
                self.skipTest(f"{tool} is not installed")
        self.tmp = M.TempDir("mc-sim-")
        os.chmod(self.tmp.path, 0o777)
        self.bus = M.Bus(self.tmp, system_like=False)
        self.addCleanup(self.tmp.cleanup)
        self.addCleanup(self.bus.stop)
        self.env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS=self.bus.address)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("INVOCATION_ID", None)
        # As root, prove the point: the daemon and the client run as nobody.
        self.prefix = M.NOBODY if os.geteuid() == 0 and shutil.which("setpriv") else []
        state = self.tmp.join("state")
        os.mkdir(state)
        os.chmod(state, 0o777)
        self.log = open(self.tmp.join("memcoordd.log"), "w")
        self.daemon = M.spawn(self.prefix + [M.MEMCOORDD, "--connect", "sim:" + SCENARIO, "--bus", "session",
                                             "--sim-speed", str(SPEED), "--state-dir", state, "-v"],
                              env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.addCleanup(self.stop_daemon)

    def stop_daemon(self):
        if self.daemon.poll() is None:
            M.kill_group(self.daemon)
        self.log.close()

    def daemon_log(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def ctl(self, *args):
        r = M.run(self.prefix + [MEMCOORDCTL, "--user"] + list(args), env=self.env, timeout=20)
        return r

    def status(self):
        r = self.ctl("--json=short", "status")
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)

    def test_memory_moves(self):
        st = M.wait_for(self.status, 20, interval=0.2, what="memcoordctl status answers")
        self.assertEqual(st.get("state"), "running", json.dumps(st)[:400])
        first = {d["name"]: d for d in st["domains"]}
        self.assertEqual(sorted(first), ["demo-1", "demo-2", "demo-3"])

        # 25 real seconds are 250 simulated ones at speed 10.
        seen = {n: set() for n in first}
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            st = self.status()
            if st:
                for d in st["domains"]:
                    seen[d["name"]].add(d["actual_bytes"])
            moved = [n for n, v in seen.items() if max(v) - min(v) >= 50 * M.MIB]
            if len(moved) >= 2 and max(seen["demo-1"]) > 600 * M.MIB:
                break
            time.sleep(0.3)
        # Whatever the policy: memory moves between guests (two of them by 50 MiB or more),
        # and the consumer gets past its 512 MiB (its workload wants ~620).
        self.assertGreaterEqual(len(moved), 2, f"{seen}\n" + self.daemon_log()[-3000:])
        self.assertGreater(max(seen["demo-1"]), 600 * M.MIB, "busy guest never grew:\n" + self.daemon_log()[-3000:])

        # The human-readable view too, and the tick rate: ~SPEED ticks per real second.
        r = self.ctl("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("demo-1", r.stdout)
        c = M.Client(self.bus)
        t0, n0 = time.monotonic(), c.get("TickCount")
        time.sleep(2)
        rate = (c.get("TickCount") - n0) / (time.monotonic() - t0)
        self.assertGreater(rate, SPEED * 0.5, f"{rate:.1f} ticks/s at --sim-speed {SPEED}")
        self.assertLess(rate, SPEED * 1.5, f"{rate:.1f} ticks/s at --sim-speed {SPEED}")
        self.assertEqual(c.get("LibvirtURI"), "sim:" + SCENARIO)

        self.daemon.send_signal(signal.SIGTERM)
        self.assertEqual(self.daemon.wait(10), 0, self.daemon_log()[-2000:])

    def test_bad_scenario(self):
        """A scenario that does not parse: the parser's FILE:LINE message, exit 1."""
        bad = self.tmp.join("bad.ini")
        with open(bad, "w") as f:
            f.write("[Guest a]\nSchedule=idle:20,ramp:10\n")
        os.chmod(bad, 0o644)
        r = M.run(self.prefix + [M.MEMCOORDD, "--connect", "sim:" + bad, "--bus", "none"], env=self.env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(bad + ":2: Schedule: step 2 'ramp:10'", r.stderr)


if __name__ == "__main__":
    unittest.main()
