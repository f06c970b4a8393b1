#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The systemd unit as built (build/dbus/memcoordd.service), and memcoordd in its sandbox.

No systemd runs here as PID 1, so the unit is checked offline with systemd-analyze, and the
sandbox it asks for is built by hand around memcoordd: a private mount namespace in which
every mount is read-only except the state directory (ProtectSystem=strict, StateDirectory=),
/proc mounted anew with hidepid=invisible (ProtectProc=invisible), a private network
namespace (PrivateNetwork=), no capabilities (CapabilityBoundingSet=) and no new privileges
(NoNewPrivileges=). The system call filter and the rest stay systemd's to apply.
"""

import os
import re
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mctest  # noqa: E402
from mctest import (MIB, SOURCE_ROOT, Bus, Client, Daemon, TempDir, MEMCOORDD, require_root,  # noqa: E402
                    require_tools, run, wait_for)

UNIT = os.environ.get("MC_UNIT_FILE", "")

# systemd-analyze security: 0.0 is PERFECT, 0.1-0.9 SAFE, 1.0-4.9 OK. The unit scores 0.9:
# what is left is what memcoordd needs: it runs as root (libvirtd lets uid 0 on its read-write
# socket without polkit, SO_PEERCRED), it needs AF_UNIX (the bus and libvirt), /proc/meminfo
# (no ProcSubset=pid), and ProtectClock='s read access to the RTC; the @privileged and
# @resources groups stay in the system call filter because nothing here can check that
# libvirt's client and GLib never call them. Anything that raises the score above SAFE is a
# loosened sandbox and must be argued for here.
MAX_EXPOSURE = 0.9

# The sandbox: every mount read-only but the state directory, /proc anew, then memcoordd
# without capabilities. Runs inside unshare --mount --net.
SANDBOX_SH = r"""
set -eu
state="$1"; probe="$2"; procopts="$3"; shift 3
mount --make-rprivate /
findmnt -rno TARGET | while read -r target; do
    mount -o remount,bind,ro "$target" 2>/dev/null || true
done
mount --bind "$state" "$state"
mount -o remount,bind,rw "$state"
mount -t proc -o "$procopts" proc /proc
# The sandbox must hold: the directory around the state directory is not writable.
if touch "$probe" 2>/dev/null; then
    echo "sandbox: $probe is writable" >&2
    exit 99
fi
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all -- "$@"
"""


def unit_for_this_build(tmp):
    """The built unit with ExecStart= pointing at the built memcoordd (the installed path
    does not exist here), and a man tree holding the pages Documentation= names."""
    with open(UNIT) as f:
        text = f.read()
    exec_start = re.search(r"^ExecStart=(\S+)", text, re.M)
    assert exec_start and exec_start.group(1).endswith("/memcoordd"), "no ExecStart=.../memcoordd"
    text = text.replace(exec_start.group(1), MEMCOORDD, 1)
    path = tmp.join("memcoordd.service")
    with open(path, "w") as f:
        f.write(text)
    for page in ("memcoordd.8", "memcoordctl.1", "memcoord.conf.5"):
        section = tmp.join("man", "man" + page[-1])
        os.makedirs(section, exist_ok=True)
        shutil.copy(os.path.join(SOURCE_ROOT, "man", page), section)
    return path


@require_tools("systemd-analyze")
class UnitFileTest(unittest.TestCase):

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.unit = unit_for_this_build(self.tmp)

    def test_verify(self):
        # verify also runs man for each Documentation= entry: the pages are in our tree.
        env = dict(os.environ, MANPATH=self.tmp.join("man"))
        r = run(["systemd-analyze", "verify", self.unit], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).strip(), "", "systemd-analyze verify had something to say")

    def test_verify_metrics_socket(self):
        # Verified next to the service it names (Service=memcoordd.service).
        sock = self.tmp.join("memcoordd-metrics.socket")
        shutil.copy(os.path.join(SOURCE_ROOT, "dbus", "memcoordd-metrics.socket"), sock)
        env = dict(os.environ, MANPATH=self.tmp.join("man"))
        r = run(["systemd-analyze", "verify", sock, self.unit], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual((r.stdout + r.stderr).strip(), "", "systemd-analyze verify had something to say")
        with open(sock) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^ListenStream=127\.0\.0\.1:9848$")
        self.assertRegex(text, r"(?m)^FileDescriptorName=metrics$")

    def test_security_exposure(self):
        r = run(["systemd-analyze", "security", "--no-pager", "--offline=true", self.unit])
        print("\n" + r.stdout, flush=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"Overall exposure level for memcoordd.service: (\d+\.\d+) (\w+)", r.stdout)
        self.assertIsNotNone(m, "no overall exposure level in the output")
        self.assertLessEqual(float(m.group(1)), MAX_EXPOSURE, f"exposure {m.group(1)} {m.group(2)}")
        # The same bound through systemd-analyze's own check (its scale is 0-100).
        r = run(["systemd-analyze", "security", "--no-pager", "--offline=true",
                 "--threshold=%d" % round(MAX_EXPOSURE * 10), self.unit])
        self.assertEqual(r.returncode, 0, "systemd-analyze security --threshold refused the unit")

    def test_unit_keeps_proc_meminfo_visible(self):
        with open(self.unit) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^ProtectProc=invisible$")
        self.assertNotRegex(text, r"(?m)^ProcSubset=pid", "ProcSubset=pid hides /proc/meminfo")
        self.assertRegex(text, r"(?m)^ProtectSystem=strict$")
        self.assertRegex(text, r"(?m)^StateDirectory=memcoord$")


@require_root
@require_tools("dbus-daemon", "busctl", "dbus-send", "setpriv", "unshare", "findmnt")
class SandboxTest(unittest.TestCase):
    """memcoordd where the unit puts it."""

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.bus = Bus(self.tmp)
        self.addCleanup(self.bus.stop)
        self.root = Client(self.bus)
        self.script = self.tmp.join("sandbox.sh")
        with open(self.script, "w") as f:
            f.write(SANDBOX_SH)

    def start(self, procopts, name):
        state = self.tmp.join("state-" + name)
        os.makedirs(state)
        wrapper = ["unshare", "--mount", "--net", "--", "sh", self.script, state, self.tmp.join("probe"), procopts]
        d = Daemon(self.tmp, self.bus, state_dir=state, name=name, wrapper=wrapper)
        self.addCleanup(self._stop, d)
        return d

    def _stop(self, d):
        status = d.stop()
        outcome = getattr(self, "_outcome", None)
        if outcome is not None and not getattr(outcome, "success", True):
            sys.stderr.write(f"--- {d.log_path}\n{d.log_text()[-4000:]}\n")

    def test_reads_host_memory_and_saves_settings(self):
        start = time.monotonic()
        d = self.start("hidepid=invisible", "sandboxed")
        d.wait_ready()
        props = self.root.get_all()
        self.assertGreater(props["HostTotalBytes"], 0)
        self.assertGreater(props["HostFreeBytes"], 0)
        self.assertLessEqual(props["HostFreeBytes"], props["HostTotalBytes"])
        self.root.call("SetDomainThreshold", "uint64:%d" % (150 * MIB))
        with open(os.path.join(d.state_dir, "state.conf")) as f:
            self.assertIn("DomainThreshold=153600K", f.read())
        self.assertFalse(os.path.exists(self.tmp.join("probe")))
        self.assertEqual(d.stop(), 0, d.log_text())
        print(f"\nsandboxed memcoordd: host {props['HostTotalBytes'] // MIB} MiB, "
              f"free {props['HostFreeBytes'] // MIB} MiB, setting saved ({time.monotonic() - start:.1f} s)",
              flush=True)

    def test_proc_subset_pid_would_hide_host_memory(self):
        # The control: with ProcSubset=pid's mount option, /proc/meminfo is gone and no tick
        # can be made. This is why the unit does not set it.
        d = self.start("hidepid=invisible,subset=pid", "subset-pid")
        wait_for(lambda: "Failed to read host memory" in d.log_text(), 30, what="the host memory failure")
        wait_for(self.root.name_has_owner, 10, what="memcoordd on the bus")
        self.assertEqual(self.root.get("TickCount"), 0)
        self.assertEqual(self.root.get("HostTotalBytes"), 0)


if __name__ == "__main__":
    mctest.main()
