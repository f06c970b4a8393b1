#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""libvirt's cost of a memcoordd tick on real guests: 1, 3 and 6 idle tiny guests.

    bench-real.py --bench BUILD/tests/e2e/bench-real-libvirt --build-dir BUILD --out DIR
                  [--counts 1,3,6] [--reps 30]

Boots the guests one count after the other (1, then 2 more, then 3 more), waits until they are
ready and idle, and runs bench-real-libvirt against qemu:///system for each count: one bulk
virConnectGetAllDomainStats(BALLOON) against one virDomainMemoryStats per guest, and a whole
dry-run mc_manager_tick(), interleaved rep by rep. Prints one table and writes it to
DIR/e2e-bench.txt. A benchmark, not a test: it fails only when it cannot measure. Needs root.
"""

import argparse
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib as E  # noqa: E402
from e2elib import G, log  # noqa: E402

PREFIX = "e2e-bench-"


def libvirt_version() -> str:
    try:
        out = subprocess.run(["virsh", "-c", E.URI, "version"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    parts = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.startswith(("Using library", "Running hypervisor", "Running against daemon"))]
    return "; ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", required=True, help="the bench-real-libvirt program")
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kit", default=os.environ.get("MC_E2E_KIT", E.DEFAULT_KIT))
    ap.add_argument("--work", default=os.environ.get("MC_E2E_WORK", E.DEFAULT_WORK))
    ap.add_argument("--counts", default="1,3,6")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--quiet-s", type=float, default=5.0,
                    help="seconds to let freshly booted guests go idle before measuring")
    a = ap.parse_args(argv)
    counts = sorted({int(x) for x in a.counts.split(",") if x})
    try:
        E.require_host(["virsh", "libvirtd", "qemu-system-x86_64"])
    except E.Skip as e:
        print(f"SKIP: {e}")
        return E.SKIP
    out = os.path.abspath(a.out)
    work = os.path.join(out, "e2e-bench")
    os.makedirs(work, exist_ok=True)
    host = E.Host(work, a.kit, a.build_dir, os.path.join(a.work, "libvirt-host"), prefix=PREFIX)
    rows = []
    versions = "?"
    t_all = time.monotonic()
    try:
        E.build_kit(a.kit)
        host.start_libvirt()
        versions = libvirt_version()
        # Other guests would be counted by the bulk call; another memcoordd adds monitor load.
        E.wait_for_quiet_host(PREFIX)
        host.guests = G.Guests(a.kit, os.path.join(work, "console"), prefix=PREFIX)
        booted = 0
        for n in counts:
            names = [host.guests.add(f"{PREFIX}{i}", schedule="idle") for i in range(booted + 1, n + 1)]
            log(f"booting {len(names)} guest(s) for {n}")
            host.guests.start(names)
            host.guests.wait_ready(names=names, timeout=240)
            booted = n
            time.sleep(a.quiet_s)
            p = subprocess.run([a.bench, "--uri", E.URI, "--reps", str(a.reps), "--expect", str(n)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
            if p.returncode != 0:
                print(p.stdout + p.stderr, file=sys.stderr)
                raise RuntimeError(f"bench-real-libvirt failed with {n} guests")
            for line in p.stdout.splitlines():
                if line and not line.startswith("#"):
                    rows.append(line.split("\t"))
    except (E.Disturbed, RuntimeError, G.GuestError) as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        host.teardown()

    head = ["guests", "part", "runs", "min ms", "median ms", "max ms", "median per guest ms", "calls", "note"]
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    lines = [f"# libvirt cost of a tick on real guests ({time.strftime('%Y-%m-%d')}, {platform.node()}, "
             f"{os.cpu_count()} CPUs; {versions})",
             "# tiny idle TCG guests, balloon stats every second; parts interleaved rep by rep",
             "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.append(f"# whole bench {time.monotonic() - t_all:.0f} s")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "e2e-bench.txt"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
