#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""memcoordd as a foreground process (--bus none) on libvirt's test driver: arguments, config
errors, signals, and the balloon lines it logs."""

import os
import re
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mctest import (MEMCOORDD, NODE_GUESTS, NODE_URI, Daemon, TempDir, claim_chain_kib, kill_group,  # noqa: E402
                    main, sanitizer_reports, spawn, wait_for)

BALLOON_LINE = re.compile(r"^memcoordd: (\S+): (\d+) MiB -> (\d+) MiB \(([a-z-]+)\)( \[dry-run\])?$")


def balloon_lines(text):
    """(name, from MiB, to MiB, reason, dry-run) of every balloon line."""
    out = []
    for line in text.splitlines():
        m = BALLOON_LINE.match(line)
        if m:
            out.append((m.group(1), int(m.group(2)), int(m.group(3)), m.group(4), bool(m.group(5))))
    return out


class ProcessTest(unittest.TestCase):

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.config = self.tmp.join("empty.conf")
        with open(self.config, "w") as f:
            f.write("[Coordinator]\n")

    def run_to_exit(self, args, timeout=10):
        """Runs memcoordd with args; returns (status, stdout, stderr). A process still running
        after timeout is killed and the test fails: it took arguments it should refuse."""
        proc = spawn([MEMCOORDD] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, err = proc.communicate()
            self.fail(f"memcoordd {' '.join(args)} kept running; stderr:\n{err.decode(errors='replace')[-2000:]}")
        kill_group(proc)
        err_text = err.decode(errors="replace")
        self.assertEqual(sanitizer_reports(err_text), [], err_text[-4000:])
        return proc.returncode, out.decode(errors="replace"), err_text

    def start(self, *args, **kwargs):
        d = Daemon(self.tmp, None, args=args, config=self.config, **kwargs)
        self.addCleanup(d.stop)
        return d

    def wait_lines(self, d, predicate, timeout=30, what="log lines"):
        def ready():
            if d.proc.poll() is not None:
                raise AssertionError(f"memcoordd exited with {d.proc.returncode}:\n{d.log_text()}")
            lines = balloon_lines(d.log_text())
            return lines if predicate(lines) else None
        return wait_for(ready, timeout, what=what)

    def test_bad_arguments(self):
        common = ["--bus", "none", "--connect", NODE_URI, "--config", self.config]
        cases = [
            ["--interval", "0"],
            ["--interval", "abc"],
            ["--interval", "7200"],
            ["--interval", "-1"],
            ["--bus", "foo"],
            ["--no-such-option"],
            ["0"],
            ["1", "2"],
        ]
        for extra in cases:
            with self.subTest(args=extra):
                status, out, err = self.run_to_exit(common + extra)
                self.assertNotEqual(status, 0)
                lines = err.strip().splitlines()
                self.assertEqual(len(lines), 1, f"stderr is not one line: {err!r}")
                self.assertTrue(lines[0].startswith("memcoordd: "), lines[0])
                self.assertEqual(out, "")

    def test_config_unknown_key(self):
        path = self.tmp.join("bad.conf")
        with open(path, "w") as f:
            f.write("# memcoord\n[Coordinator]\nDomainThreshold=100M\nNoSuchKey=1\n")
        status, out, err = self.run_to_exit(["--bus", "none", "--connect", NODE_URI, "--config", path])
        self.assertNotEqual(status, 0)
        self.assertIn(f"{path}:4:", err)
        self.assertIn("NoSuchKey", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_config_bad_value(self):
        path = self.tmp.join("bad.conf")
        with open(path, "w") as f:
            f.write("[Coordinator]\nIntervalSec=0.2\n\n[Domain vm1]\nMin=lots\n")
        status, out, err = self.run_to_exit(["--bus", "none", "--connect", NODE_URI, "--config", path])
        self.assertNotEqual(status, 0)
        self.assertIn(f"{path}:5:", err)

    def test_version(self):
        status, out, err = self.run_to_exit(["--version"])
        self.assertEqual(status, 0)
        self.assertRegex(out, r"^memcoordd \d+\.\d+")

    def test_sigterm_exits_zero(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                d = self.start(name="memcoordd-" + sig.name)
                self.wait_lines(d, lambda lines: len(lines) >= 3, what="the first balloon lines")
                d.proc.send_signal(sig)
                try:
                    status = d.proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.fail(f"memcoordd did not stop on {sig.name}")
                self.assertEqual(status, 0, d.log_text()[-3000:])
                self.assertIn("Stopping on signal", d.log_text())

    def test_balloon_lines_follow_the_claim_rule(self):
        d = self.start()
        balloon = [n for n, g in NODE_GUESTS.items() if g[3]]
        # Each balloon guest converges in a few dozen ticks on the test driver.
        chains = {n: claim_chain_kib(NODE_GUESTS[n][1] * 1024, 200) for n in balloon}
        lines = self.wait_lines(d, lambda ls: all(sum(1 for x in ls if x[0] == n) >= len(chains[n]) for n in balloon),
                                timeout=120, what="every guest to converge")
        d.stop()
        lines = balloon_lines(d.log_text())
        self.assertNotIn("vm-noballoon", [x[0] for x in lines])
        for name in balloon:
            mine = [x for x in lines if x[0] == name]
            expected = [(name, a // 1024, t // 1024, "claim", False) for a, t in chains[name]]
            self.assertEqual(mine, expected, f"{name}'s balloon lines")
        first = {x[0]: x for x in reversed(lines)}
        self.assertEqual(first["vm1"][1:3], (1024, 972))
        self.assertEqual(first["vm2"][1:3], (2048, 1945))
        self.assertEqual(first["vm3"][1:3], (512, 486))

    def test_dry_run_logs_and_changes_nothing(self):
        d = self.start("--dry-run")
        balloon = [n for n, g in NODE_GUESTS.items() if g[3]]
        self.wait_lines(d, lambda ls: all(sum(1 for x in ls if x[0] == n) >= 4 for n in balloon),
                        what="four ticks of dry-run lines")
        lines = balloon_lines(d.log_text())
        for name in balloon:
            mine = [x for x in lines if x[0] == name]
            first = claim_chain_kib(NODE_GUESTS[name][1] * 1024, 1)[0]
            # Nothing was applied: every tick decides the same from the same figures.
            self.assertEqual(set(mine), {(name, first[0] // 1024, first[1] // 1024, "claim", True)})
        for line in d.log_text().splitlines():
            if " MiB -> " in line:
                self.assertTrue(line.endswith(" [dry-run]"), line)


if __name__ == "__main__":
    main()
