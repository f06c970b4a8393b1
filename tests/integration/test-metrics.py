#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""memcoordd's Prometheus metrics, scraped by the real Prometheus server.

memcoordd runs as root on a private bus, on libvirt's test driver (tests/data/node-guests.xml),
serving metrics over HTTP (--metrics-listen, or a socket passed by systemd-socket-activate as
memcoordd-metrics.socket would) and as a textfile. `promtool check metrics` lints what it
serves; a Prometheus server scrapes it every second and its HTTP API must return the figures
the daemon's ListDomains shows.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mctest import (NODE_GUESTS, Bus, Client, Daemon, TempDir, kill_group, require_root,  # noqa: E402
                    require_tools, run, spawn, wait_for)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, method="GET", timeout=5):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def promtool_check(text):
    r = subprocess.run(["promtool", "check", "metrics"], input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    return r.returncode, r.stdout


def parse_samples(text):
    """{(name, frozenset(labels)): value} of an exposition (our own output: simple labels)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        if "{" in head:
            name, rest = head.split("{", 1)
            labels = {}
            for part in rest.rstrip("}").split('",'):
                k, v = part.split("=", 1)
                labels[k] = v.strip('"')
            out[(name, frozenset(labels.items()))] = float(value)
        else:
            out[(head, frozenset())] = float(value)
    return out


class MetricsTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.bus = Bus(self.tmp)
        self.addCleanup(self.bus.stop)
        self.root = Client(self.bus)

    def start_daemon(self, args=(), wrap=None, first_url=None):
        """wrap: a command to run memcoordd under (systemd-socket-activate), which starts it
        at the first connection: first_url is fetched then, and its answer returned."""
        d = Daemon(self.tmp, self.bus, args=args)
        answer = None
        if wrap:
            # Re-spawned under the wrapper with the same argv.
            kill_group(d.proc)
            d.log.close()
            d.log = open(d.log_path, "w")
            env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
            for k in ("NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM"):
                env.pop(k, None)
            d.proc = spawn(wrap + d.argv, env=env, stdout=d.log, stderr=subprocess.STDOUT)
            self.addCleanup(self._stop, d)
            try:
                answer = wait_for(lambda: self._try_get(first_url), 30, interval=0.2, what="the first answer")
            except AssertionError:
                raise AssertionError("no answer; log:\n" + d.log_text())
        else:
            self.addCleanup(self._stop, d)
        d.wait_ready()
        return answer if wrap else d

    @staticmethod
    def _try_get(url):
        try:
            return http_get(url, timeout=20)
        except OSError:
            return None

    def _stop(self, d):
        d.stop()
        outcome = getattr(self, "_outcome", None)
        if outcome is not None and not getattr(outcome, "success", True):
            sys.stderr.write(f"--- {d.log_path}\n{d.log_text()[-4000:]}\n")

    def guest(self, name):
        return next(g for g in self.root.list_domains() if g["name"] == name)


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv", "promtool")
class EndpointTest(MetricsTestCase):
    """The HTTP endpoint and the textfile, read directly."""

    def test_endpoint_serves_valid_exposition(self):
        port = free_port()
        self.start_daemon(["--metrics-listen", f"127.0.0.1:{port}"])
        status, headers, body = http_get(f"http://127.0.0.1:{port}/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Content-Type"), CONTENT_TYPE)
        self.assertEqual(int(headers.get("Content-Length")), len(body.encode()))
        rc, out = promtool_check(body)
        self.assertEqual((rc, out), (0, ""), "promtool check metrics complains")

        samples = parse_samples(body)
        for name, (uuid, _cur, max_mib, balloon) in NODE_GUESTS.items():
            labels = frozenset({"domain": name, "uuid": uuid}.items())
            self.assertEqual(samples[("memcoord_guest_maximum_bytes", labels)], max_mib * 1024 * 1024)
            status_labels = frozenset({"domain": name, "uuid": uuid,
                                       "status": "managed" if balloon else "no-balloon"}.items())
            self.assertEqual(samples[("memcoord_guest_status", status_labels)], 1, name)
        self.assertGreaterEqual(samples[("memcoord_ticks_total", frozenset())], 1)
        self.assertGreaterEqual(samples[("memcoord_tick_duration_seconds_count", frozenset())], 1)
        # The test driver's guests have unused = current / 2: idle, so claims were made.
        self.assertGreater(samples[("memcoord_balloon_changes_total", frozenset({"reason": "claim"}.items()))], 0)
        self.assertGreater(samples[("memcoord_libvirt_calls_total", frozenset({"kind": "bulk"}.items()))], 0)
        self.assertGreater(
            samples[("memcoord_guest_skips_total", frozenset({"status": "no-balloon"}.items()))], 0)

    def test_endpoint_http_errors(self):
        port = free_port()
        self.start_daemon(["--metrics-listen", f":{port}"])
        base = f"http://127.0.0.1:{port}"
        self.assertEqual(http_get(base + "/nothing")[0], 404)
        self.assertEqual(http_get(base + "/metrics", method="POST")[0], 405)
        status, headers, body = http_get(base + "/metrics", method="HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertGreater(int(headers["Content-Length"]), 1000)
        self.assertEqual(http_get(base + "/metrics?x=1")[0], 200)
        # A client that sends half a request and stalls holds nothing up.
        stalled = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(stalled.close)
        stalled.sendall(b"GET /metr")
        self.assertEqual(http_get(base + "/metrics", timeout=3)[0], 200)

    def test_bad_listen_address(self):
        r = run([os.environ["MEMCOORDD"], "--bus", "none", "--metrics-listen", "127.0.0.1:http"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("--metrics-listen 127.0.0.1:http", r.stderr)

    def test_textfile(self):
        path = self.tmp.join("textfile", "memcoord.prom")
        os.mkdir(os.path.dirname(path))
        self.start_daemon(["--metrics-file", path])
        wait_for(lambda: os.path.exists(path), 10, what="the metrics file")
        first = os.stat(path)
        with open(path) as f:
            rc, out = promtool_check(f.read())
        self.assertEqual((rc, out), (0, ""))
        # Replaced, not rewritten in place: a new inode each time, never a partial file.
        wait_for(lambda: os.stat(path).st_ino != first.st_ino, 10, what="the file to be replaced")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o644)
        self.assertEqual(sorted(os.listdir(os.path.dirname(path))), ["memcoord.prom"])

    @require_tools("systemd-socket-activate")
    def test_socket_activation(self):
        # As memcoordd-metrics.socket does: the listening socket is passed, named "metrics".
        port = free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        status, _, body = self.start_daemon(
            wrap=["systemd-socket-activate", "-l", f"127.0.0.1:{port}", "--fdname=metrics",
                  "-E", "DBUS_SYSTEM_BUS_ADDRESS"], first_url=url)
        self.assertEqual(status, 200)
        self.assertIn('memcoord_guest_maximum_bytes{domain="vm1"', body)
        # The same socket keeps serving, now with ticks done.
        status, _, body = http_get(url)
        self.assertEqual(status, 200)
        self.assertGreaterEqual(parse_samples(body)[("memcoord_ticks_total", frozenset())], 1)


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv", "prometheus")
class PrometheusTest(MetricsTestCase):
    """A real Prometheus server scrapes memcoordd; its query API agrees with ListDomains."""

    def start_prometheus(self, target):
        self.prom_port = free_port()
        conf = self.tmp.join("prometheus.yml")
        with open(conf, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: memcoord
    static_configs:
      - targets: ['{target}']
""")
        self.prom_log = open(self.tmp.join("prometheus.log"), "w")
        self.addCleanup(self.prom_log.close)
        proc = spawn(["prometheus", "--config.file=" + conf, "--storage.tsdb.path=" + self.tmp.join("tsdb"),
                      f"--web.listen-address=127.0.0.1:{self.prom_port}", "--log.level=warn"],
                     stdout=self.prom_log, stderr=subprocess.STDOUT)
        self.addCleanup(kill_group, proc)

        def ready():
            if proc.poll() is not None:
                raise AssertionError("prometheus exited: " + open(self.prom_log.name).read()[-2000:])
            try:
                return http_get(f"http://127.0.0.1:{self.prom_port}/-/ready", timeout=1)[0] == 200
            except OSError:
                return False
        wait_for(ready, 60, interval=0.2, what="prometheus to be ready")

    def query(self, expr):
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, body = http_get(url)
        self.assertEqual(status, 200, body)
        data = json.loads(body)
        self.assertEqual(data["status"], "success", body)
        return data["data"]["result"]

    def scalar(self, expr):
        result = self.query(expr)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def test_scraped_series_match_the_bus(self):
        port = free_port()
        self.start_daemon(["--metrics-listen", f"127.0.0.1:{port}"])
        t0 = time.monotonic()
        self.start_prometheus(f"127.0.0.1:{port}")

        # Scraped, and healthy.
        wait_for(lambda: self.scalar('up{job="memcoord"}') == 1, 30, interval=0.5, what="a successful scrape")
        sys.stderr.write(f"first scrape {time.monotonic() - t0:.1f} s after memcoordd was ready\n")

        # Freeze the balloons (a target set just before lands at the next reading: wait for
        # two), then the next scrape must show what the bus shows.
        self.root.call("Pause")
        ticks = self.root.get("TickCount")
        wait_for(lambda: self.root.get("TickCount") >= ticks + 2, 10, what="two ticks after Pause")
        paused_at = time.time()
        expected = {g["name"]: g for g in self.root.list_domains()}

        def scraped_after_pause():
            r = self.query('timestamp(memcoord_guest_actual_bytes{domain="vm1"})')
            return r and float(r[0]["value"][1]) > paused_at + 0.1
        wait_for(scraped_after_pause, 30, interval=0.5, what="a scrape after Pause")

        for name, g in expected.items():
            uuid = NODE_GUESTS[name][0]
            sel = f'{{job="memcoord",domain="{name}",uuid="{uuid}"}}'
            self.assertEqual(self.scalar("memcoord_guest_actual_bytes" + sel), g["actual"], name)
            self.assertEqual(self.scalar("memcoord_guest_target_bytes" + sel), g["target"], name)
            self.assertEqual(self.scalar("memcoord_guest_max_bytes" + sel), g["max"], name)
            self.assertEqual(self.scalar("memcoord_guest_min_bytes" + sel), g["min"], name)
            self.assertEqual(self.scalar("memcoord_guest_unused_bytes" + sel), g["unused"], name)
            status = self.query(f'memcoord_guest_status{sel} == 1')
            self.assertEqual([s["metric"]["status"] for s in status], [g["status"]], name)
        # vm1 was claimed from (1024 MiB at start, half of it unused): below where it began.
        self.assertLess(expected["vm1"]["actual"], NODE_GUESTS["vm1"][1] * 1024 * 1024)

        self.assertEqual(self.scalar('memcoord_state{state="paused"}'), 1)
        # The host is this machine (/proc/meminfo): it moves between the scrape and the call.
        self.assertAlmostEqual(self.scalar("memcoord_host_free_bytes"), self.root.get("HostFreeBytes"),
                               delta=512 * 1024 * 1024)
        self.assertEqual(self.scalar("memcoord_domain_threshold_bytes"), self.root.get("DomainThresholdBytes"))
        ticks = self.scalar("memcoord_ticks_total")
        self.assertGreater(ticks, 0)
        self.assertLessEqual(ticks, self.root.get("TickCount"))
        self.assertGreater(self.scalar('sum(memcoord_balloon_changes_total{reason="claim"})'), 0)
        # The histogram is usable as Prometheus histograms are.
        p99 = self.scalar("histogram_quantile(0.99, memcoord_tick_duration_seconds_bucket)")
        self.assertIsNotNone(p99)
        self.assertGreater(p99, 0)
        self.assertLess(p99, 1.0)

        # The shipped Grafana dashboard: every query parses, and names only series we export.
        with open(os.path.join(os.environ["MC_SOURCE_ROOT"], "tools", "grafana-memcoord.json")) as f:
            dashboard = json.load(f)
        _, _, exposition = http_get(f"http://127.0.0.1:{port}/metrics")
        exported = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        self.assertGreater(len(exprs), 10)
        for expr in exprs:
            concrete = expr.replace("$instance", ".*").replace("$domain", ".*")
            self.query(concrete)  # fails the test on a PromQL error
            for name in re.findall(r"\bmemcoord_[a-z_]+", expr):
                family = re.sub(r"_(bucket|sum|count)$", "", name)
                self.assertIn(family, exported, f"dashboard query names {name}, which is not exported")


if __name__ == "__main__":
    unittest.main()
