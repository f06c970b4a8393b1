#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""memcoord-sim as a user meets it: exit statuses, error messages with the scenario's line
numbers, --json, --csv, --plot, --set, --check, and the same file giving the same run."""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sweep  # noqa: E402  (the policy sweep's generated cases)

SIM = os.environ.get("MEMCOORD_SIM", "")
ROOT = os.environ.get("MC_SOURCE_ROOT", "")
SCEN = os.path.join(ROOT, "tests", "sim")


def run(*args):
    return subprocess.run([SIM] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120, check=False)


class ToolTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="mc-simtool-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_bad_input_exits_1_with_the_line(self):
        cases = [
            ("[Guest a]\nSchedule=idle:20,ramp:10\n", ":2: Schedule: step 2 'ramp:10': expected ramp:SIZE:SECS"),
            ("[Guest a]\n\n[Settings]\nDomainThreshold=lots\n", ":4: DomainThreshold: 'lots' is not a size"),
            ("[Settings]\nBogus=1\n[Guest a]\n", ":2: unknown key 'Bogus' in [Coordinator]"),
            ("[Guest a]\n[Fault x]\nKind=stale\nGuest=nobody\n", ":4: Guest: no guest 'nobody'"),
        ]
        for text, expect in cases:
            path = self.write("bad.ini", text)
            r = run(path)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(path + expect, r.stderr)
            self.assertEqual(r.stdout, "")
        r = run(os.path.join(SCEN, "e2e-1.ini"), "--set", "Model.NoSuchThing=1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no model parameter 'NoSuchThing'", r.stderr)
        r = run(os.path.join(SCEN, "e2e-1.ini"), "--set", "HostBudget=12parsecs")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--set HostBudget=12parsecs: HostBudget: '12parsecs' is not a size", r.stderr)
        r = run(os.path.join(self.tmp, "missing.ini"))
        self.assertEqual(r.returncode, 1)
        r = run()
        self.assertEqual(r.returncode, 1)
        self.assertIn("expected a scenario file", r.stderr)

    def test_text_table(self):
        r = run(os.path.join(SCEN, "e2e-1.ini"))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("GUEST"), lines[0])
        for col in ("OOM", "BELOW-T", "LOWEST FREE", "PEAK", "MAX RELEASE", "RETURNED", "REV/MIN"):
            self.assertIn(col, lines[0])
        self.assertEqual([ln.split()[0] for ln in lines[1:4]], ["busy", "idle1", "idle2"])
        self.assertIn("sum of actual over time", r.stdout)
        self.assertIn("CPU per tick", r.stdout)

    def test_json_csv_plot_and_determinism(self):
        png, csvp = os.path.join(self.tmp, "run.png"), os.path.join(self.tmp, "run.csv")
        ini = os.path.join(SCEN, "e2e-3.ini")
        r1 = run(ini, "--json", "--plot", png, "--csv", csvp)
        self.assertEqual(r1.returncode, 0, r1.stderr)
        a = json.loads(r1.stdout)
        self.assertEqual([g["name"] for g in a["guests"]], ["long", "short", "idle"])
        self.assertGreater(a["ticks"], 100)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        with open(csvp) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), 3 * (int(a["simulated_s"]) + 1))
        # The table's peak is the trajectory's (sampled once a second, the peak at every step).
        for g in a["guests"]:
            peak = max(float(x["actual_mib"]) for x in rows if x["guest"] == g["name"])
            self.assertGreaterEqual(g["peak_actual_mib"] + 0.01, peak)  # the CSV rounds to 0.01
            self.assertLess(g["peak_actual_mib"] - peak, 40)
        # The same file, the same run: every figure but the host's timings.
        b = json.loads(run(ini, "--json").stdout)
        for x in (a, b):
            for k in ("wall_s", "cpu_per_tick_us", "cpu_per_tick_max_us"):
                x.pop(k)
        self.assertEqual(a, b)

    def test_set_overrides(self):
        ini = os.path.join(SCEN, "e2e-1.ini")
        base = json.loads(run(ini, "--json").stdout)
        more = json.loads(run(ini, "--json", "--set", "HostBudget=1400M").stdout)
        self.assertEqual(base["budget_mib"], 1536)
        self.assertEqual(more["budget_mib"], 1400)
        # A model parameter: guests whose kernel uses 40 MiB more end higher.
        # A model parameter reaches every guest: idle guests whose kernel uses 40 MiB more have
        # 40 MiB less free before the daemon moves anything.
        fat = json.loads(run(ini, "--json", "--set", "Model.KernelBaseMiB=130", "--duration", "4").stdout)
        thin = json.loads(run(ini, "--json", "--set", "Model.KernelBaseMiB=90", "--duration", "4").stdout)
        for f, t in zip(fat["guests"], thin["guests"]):
            self.assertAlmostEqual(t["lowest_free_mib"] - f["lowest_free_mib"], 40, places=3)
        cfg = self.write("c.conf", "[Coordinator]\nHostBudget=1300M\n")
        self.assertEqual(json.loads(run(ini, "--json", "--config", cfg).stdout)["budget_mib"], 1300)

    def test_check(self):
        r = run(os.path.join(SCEN, "e2e-1.ini"), "--check")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("checks: 0 invariant(s) crossed", r.stdout)
        # Claims of 20 % against the seed's 10 %: crossed, exit 2, and said.
        r = run(os.path.join(SCEN, "e2e-1.ini"), "--check", "--set", "ClaimFraction=0.2", "--check-claim-fraction",
                "0.1")
        self.assertEqual(r.returncode, 2, r.stdout)
        self.assertIn("claim fraction 10 %", r.stdout)

    def test_faults(self):
        """The connection lost while a tick applies decisions (the 12th set_target) and again at
        150 s, failing calls, a busy guest, stale stats: the daemon's manager survives (run
        under ASan in CI), comes back each time, and never acts on what it cannot read."""
        r = run(os.path.join(SCEN, "faults.ini"), "--check", "--json", "-v")
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-3000:])
        self.assertEqual(r.stderr.count("Lost the connection"), 2, r.stderr[-3000:])
        self.assertIn("connection lost (simulated)", r.stderr)
        self.assertIn("collect failed (simulated)", r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["violations"], [])
        self.assertGreater(out["failed_set_target"], 0)
        # It came back: the consumer's memory went back after its free at 90 s, and the
        # stats that stopped at 45 s were not acted on until they flowed again at 120 s.
        busy = next(g for g in out["guests"] if g["name"] == "busy")
        self.assertGreaterEqual(busy["returned_60s_pct"], 50)

    def test_lethal_crunch(self):
        """The sweep's crunch-2600-1, three consumers ramping together into a budget that cannot
        hold them: the daemon's log names the one served first in the others' "short of" line,
        and fewer are killed than with the seed's equal shares."""
        case = next(c for c in sweep.cases() if c.name == "crunch-2600-1")
        path = self.write("lethal.ini", case.text)
        kills = {}
        for policy in ("adaptive", "seed"):
            r = run(path, "--check", "--json", "-v", "--set", f"Policy={policy}")
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            kills[policy] = sum(g["oom_kills"] for g in json.loads(r.stdout)["guests"])
            served = "too little for every consumer: c1 is served first" in r.stderr
            self.assertEqual(served, policy == "adaptive", r.stderr[-3000:])
        self.assertLess(kills["adaptive"], kills["seed"])

    def test_list_model_and_help(self):
        r = run("--list-model")
        self.assertEqual(r.returncode, 0)
        for key in ("KernelBaseMiB", "OomFreeMiB", "FreezeSec", "ActualThrottleSec", "InflateMiBs"):
            self.assertIn(key, r.stdout)
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("Exit status", r.stdout)


if __name__ == "__main__":
    unittest.main()
