#!/usr/bin/python3
"""Checks of the guest kit that need no guest, no root and no libvirtd:
memdemand on the host, the schedule parsers agreeing, the domain XML, the
domstats parser, the metrics on made-up data and the plot.

    /usr/bin/python3 tests/guest/test_kit.py [-v]
"""

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import guests as G  # noqa: E402
import sampler as S  # noqa: E402

MiB = 1024


def build_memdemand(outdir: str) -> str:
    exe = os.path.join(outdir, "memdemand")
    subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe,
                    os.path.join(HERE, "memdemand.c")], check=True)
    return exe


@unittest.skipUnless(shutil.which("gcc"), "gcc missing")
class MemdemandTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.exe = build_memdemand(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_md(self, sched, timeout=20):
        p = subprocess.run([self.exe, sched], stdout=subprocess.PIPE, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout.splitlines()

    def test_schedule_runs_to_done(self):
        rc, lines = self.run_md("idle:0.5,ramp:20:1.5,hold:1,to:-10:0.5,jump:+5,free,idle:0.5")
        self.assertEqual(rc, 0)
        self.assertEqual(lines[1], "memdemand: ready")
        self.assertEqual(lines[-1], "memdemand: done")
        held = [int(ln.split("held_mib=")[1].split()[0]) for ln in lines
                if ln.startswith("memdemand t=")]
        self.assertIn(20, held)
        self.assertLessEqual(max(held), 20)
        phases = {ln.split("phase=")[1].split()[0] for ln in lines if "phase=" in ln}
        self.assertTrue({"ramp", "hold"} <= phases, phases)
        steps = [ln for ln in lines if ln.startswith("memdemand: step ")]
        self.assertEqual(len(steps), 7)

    def test_reports_once_per_second(self):
        rc, lines = self.run_md("idle:3.2")
        ts = [int(ln.split("t=")[1].split()[0]) for ln in lines if ln.startswith("memdemand t=")]
        self.assertEqual(ts, [0, 1, 2, 3])

    def test_cache_steps(self):
        # A file stands in for the guest's /dev/vda: 8 MiB, so 20 MiB of reads wrap around.
        disk = os.path.join(self.tmp, "disk.img")
        with open(disk, "wb") as f:
            f.write(os.urandom(8 * 1024 * 1024))
        p = subprocess.run([self.exe, "ramp:4:0.5,cache:20:1.5,hold:1.8,uncache,cache:3,idle:1.2"],
                           stdout=subprocess.PIPE, text=True, timeout=20,
                           env=dict(os.environ, MEMDEMAND_DISK=disk))
        lines = p.stdout.splitlines()
        self.assertEqual(p.returncode, 0, lines)
        self.assertEqual(lines[-1], "memdemand: done")
        rep = [dict(kv.split("=") for kv in ln.split()[1:]) for ln in lines if ln.startswith("memdemand t=")]
        cache = [int(r["cache_mib"]) for r in rep]
        self.assertIn(20, cache)                                  # read all of it, wrapping
        self.assertLessEqual(max(cache), 20)
        self.assertEqual(cache[-1], 3)                            # uncache starts again at 0
        self.assertEqual({int(r["held_mib"]) for r in rep if r["phase"] == "hold"}, {4})
        # No disk: said once a second, nothing counted as read, the schedule still ends.
        p = subprocess.run([self.exe, "cache:10:1,idle:0.5"], stdout=subprocess.PIPE, text=True,
                           timeout=20, env=dict(os.environ, MEMDEMAND_DISK=os.path.join(self.tmp, "no")))
        self.assertEqual(p.returncode, 0)
        self.assertIn("memdemand: disk: No such file or directory", p.stdout)
        self.assertNotIn("cache_mib=1", p.stdout)

    def test_bad_schedules(self):
        for bad in ("ramp:10", "jump", "jump:10X", "idle,hold:3", "sleep:3", "free:1",
                    "hold:1:2", "to:5:-1", "cache", "cache:+5", "cache:5:1:2", "uncache:1"):
            rc, lines = self.run_md(bad)
            self.assertEqual(rc, 2, bad)
            self.assertTrue(lines[-1].startswith("memdemand: error"), lines)
            with self.assertRaises(ValueError, msg=bad):
                G.parse_schedule(bad)

    def test_parsers_agree(self):
        for sched in ("idle:20,ramp:400:40,hold:30,free,idle:60", "jump:1G,to:+100:5,to:-50:2",
                      "to:300M:2.5,hold", "idle", "", "jump:50,cache:1500:30,uncache,cache:1G,hold"):
            py = G.parse_schedule(sched)
            # Compare with memdemand's normalised "schedule" line for the schedule itself.
            p = subprocess.Popen([self.exe, sched], stdout=subprocess.PIPE, text=True)
            first = p.stdout.readline().strip()
            p.kill()
            p.wait()
            if not sched:
                self.assertIn("idle forever", first)
                self.assertEqual(py, [])
                continue
            c_steps = first.split(" ", 2)[2].split(",")
            self.assertEqual(len(c_steps), len(py), (first, py))
            for c, (start, kind, target, secs) in zip(c_steps, py):
                f = c.split(":")
                self.assertEqual(f[0], kind)
                if kind in ("ramp", "to", "jump"):
                    self.assertEqual(int(f[1]), target, (c, target))

    def test_cmdline_absent_means_idle(self):
        # On the host /proc/cmdline has no memdemand= parameter.
        p = subprocess.Popen([self.exe], stdout=subprocess.PIPE, text=True)
        first = p.stdout.readline()
        p.kill()
        p.wait()
        self.assertIn("idle forever", first)


class GuestsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        for f in ("vmlinux", "initramfs.gz"):
            open(os.path.join(self.tmp, f), "w").close()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_domain_xml(self):
        g = G.Guests(self.tmp, os.path.join(self.tmp, "con"))
        n = g.add(schedule="idle:5,ramp:300:10", current_mib=512, max_mib=1024,
                  autodeflate=True)
        self.assertEqual(n, "mc-1")
        self.assertEqual(g.add("x"), "mc-x")
        root = ET.fromstring(g.domain_xml(g.guests[n]))
        self.assertEqual(root.get("type"), "qemu")
        self.assertEqual(root.find("memory").text, "1024")
        self.assertEqual(root.find("currentMemory").text, "512")
        self.assertEqual(root.find("vcpu").text, "1")
        self.assertTrue(root.find("os/cmdline").text.endswith("memdemand=idle:5,ramp:300:10"))
        self.assertIn("console=ttyS0", root.find("os/cmdline").text)
        mb = root.find("devices/memballoon")
        self.assertEqual((mb.get("model"), mb.get("autodeflate"), mb.get("freePageReporting")),
                         ("virtio", "on", "on"))
        self.assertEqual(mb.find("stats").get("period"), "1")
        self.assertEqual(root.find("devices/serial/source").get("path"),
                         os.path.join(self.tmp, "con", "mc-1.log"))
        self.assertIsNone(root.find("devices/disk"))
        self.assertIsNone(root.find("devices/interface"))

    def test_disk(self):
        g = G.Guests(self.tmp, os.path.join(self.tmp, "con"))
        n = g.add("d", schedule="idle:5,cache:300:10", disk_mib=2048)
        root = ET.fromstring(g.domain_xml(g.guests[n]))
        d = root.find("devices/disk")
        self.assertEqual((d.get("type"), d.get("device")), ("file", "disk"))
        self.assertEqual((d.find("driver").get("name"), d.find("driver").get("type")), ("qemu", "raw"))
        self.assertEqual(d.find("source").get("file"), os.path.join(self.tmp, "con", "mc-d.img"))
        self.assertEqual((d.find("target").get("dev"), d.find("target").get("bus")), ("vda", "virtio"))
        steps = G.parse_schedule("idle:5,jump:40,cache:300:10,uncache,cache:1G,hold:2")
        self.assertEqual([(t, k, m) for t, k, m, _ in steps],
                         [(0, "idle", 0), (5, "jump", 40), (5, "cache", 40), (15, "uncache", 40),
                          (15, "cache", 40), (15, "hold", 40)])
        self.assertEqual(G.schedule_duration("idle:5,cache:300:10,idle:3"), 18)
        self.assertEqual(G.cache_size_mib("cache:1G:3"), 1024)

    def test_add_rejects(self):
        g = G.Guests(self.tmp, self.tmp)
        with self.assertRaises(G.GuestError):
            g.add(schedule="ramp:1")
        with self.assertRaises(G.GuestError):
            g.add(current_mib=2048, max_mib=1024)
        g.add("a")
        with self.assertRaises(G.GuestError):
            g.add("a")

    def test_missing_kernel(self):
        with self.assertRaises(G.GuestError):
            G.Guests(os.path.join(self.tmp, "nope"), self.tmp)

    def test_parse_domstats(self):
        text = ("Domain: 'mc-1'\n  balloon.current=524288\n  balloon.maximum=1048576\n"
                "  balloon.unused=430920\n  balloon.last-update=1795673702\n\n"
                "Domain: 'mc-2'\n  balloon.current=1048576\n  balloon.maximum=1048576\n")
        d = G.parse_domstats(text)
        self.assertEqual(d["mc-1"]["current"], 524288)
        self.assertEqual(d["mc-1"]["last-update"], 1795673702)
        self.assertNotIn("unused", d["mc-2"])

    def test_schedule_duration(self):
        self.assertEqual(G.schedule_duration("idle:20,ramp:400:40,hold:30,free,idle:60"), 150)
        self.assertEqual(G.schedule_duration("jump:10,hold"), float("inf"))
        self.assertEqual(G.schedule_duration(""), float("inf"))


def make_rows(series_by_guest, host_free=None):
    """{guest: [(actual_mib, unused_mib)]} one per second -> sampler rows."""
    rows = []
    n = max(len(v) for v in series_by_guest.values())
    for i in range(n):
        for g, s in sorted(series_by_guest.items()):
            if i < len(s):
                a, u = s[i]
                rows.append({"ts": 1000.0 + i, "t": float(i), "guest": g,
                             "actual_kib": a * MiB, "unused_kib": u * MiB,
                             "available_kib": None, "usable_kib": None, "last_update": None,
                             "rss_kib": None,
                             "host_free_kib": (host_free[i] * MiB) if host_free else None,
                             "host_avail_kib": None})
    return rows


class MetricsTest(unittest.TestCase):
    def test_recovery_time(self):
        rows = make_rows({"a": [(512, u) for u in (300, 90, 80, 120, 200, 50, 60, 70, 99, 101)]})
        r = S.recovery_time(rows, "a", 100 * MiB)
        self.assertEqual([(e["start"], e["end"]) for e in r["episodes"]], [(1, 3), (5, 9)])
        self.assertEqual(r["max_s"], 4)
        rows = make_rows({"a": [(512, u) for u in (300, 90, 80)]})
        r = S.recovery_time(rows, "a", 100 * MiB)
        self.assertTrue(r["episodes"][0]["open"])
        self.assertEqual(r["max_s"], 1)

    def test_reversals(self):
        acts = [512, 512.5, 511.8, 500, 480, 480.5, 490, 495, 470, 470.2]
        rows = make_rows({"a": [(a, 100) for a in acts]})
        # down (500), down, up (490), up, down (470): two reversals; sub-MiB jitter ignored
        self.assertEqual(S.reversals(rows, "a"), 2)
        self.assertEqual(S.reversals(make_rows({"a": [(512, 1)] * 5}), "a"), 0)

    def test_largest_release_share(self):
        rows = make_rows({"a": [(512, 200), (462, 150), (452, 140), (352, 100), (400, 50)]})
        r = S.largest_release_share(rows, "a")
        self.assertAlmostEqual(r["share"], 100 / 140)
        self.assertEqual(r["t"], 3)
        self.assertEqual(r["decrease_kib"], 100 * MiB)

    def test_returned_within(self):
        rows = make_rows({"a": [(512, 0), (512, 0), (480, 0), (450, 0), (460, 0), (500, 0)],
                          "b": [(300, 0)] * 6}, host_free=[1000, 1000, 1032, 1062, 1052, 1012])
        r = S.returned_within(rows, 1, 3)
        self.assertEqual(r["per_guest"]["a"], {"net_kib": 52 * MiB, "peak_kib": 62 * MiB})
        self.assertEqual(r["per_guest"]["b"]["net_kib"], 0)
        self.assertEqual(r["net_kib"], 52 * MiB)
        self.assertEqual(r["host_free_delta_kib"], 52 * MiB)

    def test_lowest_headroom(self):
        rows = make_rows({"a": [(512, 0), (600, 0), (500, 0)], "b": [(512, 0), (512, 0), (700, 0)]},
                         host_free=[4000, 3000, 3500])
        h = S.lowest_headroom(rows, budget_kib=1300 * MiB, host_floor_kib=200 * MiB)
        self.assertEqual((h["budget_kib"], h["budget_t"]), (100 * MiB, 2))
        self.assertEqual((h["host_kib"], h["host_t"]), (2800 * MiB, 1))

    def test_oom_kills(self):
        d = tempfile.mkdtemp()
        try:
            with open(os.path.join(d, "mc-1.log"), "w") as f:
                f.write("memdemand t=17 held_mib=494 phase=ramp\r\n"
                        "[   17.63] Out of memory: Killed process 93 (memdemand) total-vm:1kB\n"
                        "Killed\nmemdemand: killed by signal 9\n")
            with open(os.path.join(d, "mc-2.log"), "w") as f:
                f.write("memdemand: ready\nmemdemand t=1 held_mib=0 phase=idle\n")
            k = S.oom_kills(d)
            self.assertEqual(k["mc-1"], {"kernel": 1, "memdemand_killed": 1, "kills": 1})
            self.assertEqual(k["mc-2"]["kills"], 0)
            self.assertEqual(S.oom_kills({"x": os.path.join(d, "mc-1.log")})["x"]["kills"], 1)
        finally:
            shutil.rmtree(d)

    def test_csv_roundtrip_and_plot(self):
        d = tempfile.mkdtemp()
        try:
            path = os.path.join(d, "run.csv")
            rows = make_rows({"mc-1": [(512 - i, 300 - 5 * i) for i in range(30)],
                              "mc-2": [(400 + i, 100 + i) for i in range(30)]},
                             host_free=[20000 - 10 * i for i in range(30)])
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=S.FIELDS)
                w.writeheader()
                for r in rows:
                    w.writerow({k: ("" if v is None else v) for k, v in r.items()})
            back = S.load_csv(path)
            self.assertEqual(len(back), 60)
            self.assertEqual(S.guests_in(back), ["mc-1", "mc-2"])
            self.assertEqual(S.series(back, "mc-2", "actual_kib")[3], (3.0, 403 * MiB))
            m = S.metrics(back, threshold_kib=200 * MiB)
            self.assertEqual(m["samples"], 30)
            if shutil.which("gnuplot"):
                import plot
                png = plot.plot(path, os.path.join(d, "run.png"),
                                phases=[(5, "mc-1 ramp", "mc-1"), (20, "free")], host=True)
                with open(png, "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        finally:
            shutil.rmtree(d)


def main() -> int:
    verbosity = 2 if "-v" in sys.argv[1:] else 1
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    res = unittest.TextTestRunner(verbosity=verbosity).run(suite)
    failed = len(res.failures) + len(res.errors)
    skipped = len(res.skipped)
    print(f"{res.testsRun - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return 0 if res.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
