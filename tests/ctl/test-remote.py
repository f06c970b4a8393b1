#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
memcoordctl -H against real sshd servers on the loopback address.

Two "hosts": each is a private bus with its own memcoordd on libvirt's test driver, reached
through its own sshd (Debian's openssh-server) on 127.0.0.1 and a private port, with a host
key and a user key made here. On the client side sd-bus runs plain "ssh -xT [-p PORT] -- HOST
systemd-stdio-bridge" (libsystemd 252); an "ssh" first in PATH adds "-F" with this test's
ssh_config (the user key, the known hosts, the host aliases), because ssh reads ~/.ssh/config
from the passwd entry's home, not from $HOME. On the server side sshd's ForceCommand records
the command the client asked for and runs systemd-stdio-bridge on that host's private bus
(the 252 bridge reads no DBUS_SYSTEM_BUS_ADDRESS, only --bus-path). A third port has nothing
listening: the unreachable host.

Checks: status, domains, a setter, monitor and top over ssh; several -H in one table with a
HOST column and in JSON keyed by host; an unreachable host and a refused key as one line on
stderr, the others still shown; the exit status of a fleet.

Output is TAP. Needs root (sshd), /usr/sbin/sshd, ssh, ssh-keygen, dbus-daemon and busctl.
Usage: test-remote.py --memcoordd PATH --memcoordctl PATH --node-xml PATH
"""

import argparse
import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("test_ctl", os.path.join(HERE, "test-ctl.py"))
ctl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ctl)
tap = ctl.tap
MiB = ctl.MiB
SSHD = "/usr/sbin/sshd"
BRIDGE = shutil.which("systemd-stdio-bridge") or "/usr/bin/systemd-stdio-bridge"
MUTE_TIMEOUT = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class Ssh:
    """The keys, the sshd servers and the client's ssh configuration."""

    def __init__(self, tmp, user):
        self.tmp = tmp
        self.user = user
        self.servers = []
        self.bin = os.path.join(tmp, "bin")
        os.makedirs(self.bin)
        os.makedirs(os.path.join(tmp, "home"))
        for key in ("host_key", "user_key", "other_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f",
                            os.path.join(tmp, key)], check=True)
        with open(os.path.join(tmp, "user_key.pub")) as f:
            write(os.path.join(tmp, "authorized_keys"), f.read())
        with open(os.path.join(tmp, "host_key.pub")) as f:
            self.host_pub = " ".join(f.read().split()[:2])
        self.argv_log = os.path.join(tmp, "ssh-argv")
        # sd-bus execs "ssh" through PATH: this one adds the test's configuration.
        write(os.path.join(self.bin, "ssh"),
              f'#!/bin/sh\nprintf "%s\\n" "$*" >> {self.argv_log}\n'
              f'exec /usr/bin/ssh -F {tmp}/ssh_config "$@"\n', 0o755)

    def start_server(self, name, bus_socket):
        port = free_port()
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        commands = os.path.join(d, "commands")
        # What the client asked to run is recorded, and must be the bridge; the bridge then
        # talks to this host's private bus.
        write(os.path.join(d, "bridge"),
              f'#!/bin/sh\nprintf "%s\\n" "$SSH_ORIGINAL_COMMAND" >> {commands}\n'
              f'[ "$SSH_ORIGINAL_COMMAND" = systemd-stdio-bridge ] || exit 127\n'
              f'exec {BRIDGE} --bus-path=unix:path={bus_socket}\n', 0o755)
        write(os.path.join(d, "sshd_config"), f"""ListenAddress 127.0.0.1
Port {port}
HostKey {self.tmp}/host_key
AuthorizedKeysFile {self.tmp}/authorized_keys
StrictModes no
UsePAM no
PidFile {d}/sshd.pid
PermitRootLogin prohibit-password
AllowUsers {self.user}
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
UseDNS no
ForceCommand {d}/bridge
# The account's own shell start-up files (Debian's bash reads ~/.bashrc for commands run by
# sshd) stay out of the test.
SetEnv HOME={self.tmp}/home
""")
        log = open(os.path.join(d, "sshd.log"), "w")
        p = subprocess.Popen([SSHD, "-D", "-e", "-f", os.path.join(d, "sshd_config")], stdout=log,
                             stderr=log, preexec_fn=ctl._die_with_parent)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {open(log.name).read()}")
                time.sleep(0.05)
        self.servers.append(p)
        return port, commands

    def write_client_config(self, ports, mute_port):
        hosts = "".join(f"Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {self.user}\n"
                        for alias, port in ports.items())
        write(os.path.join(self.tmp, "ssh_config"), f"""{hosts}Host fleet-mute
  HostName 127.0.0.1
  Port {mute_port}
  ConnectTimeout {MUTE_TIMEOUT}
Host fleet-nokey
  HostName 127.0.0.1
  Port {ports['fleet-a']}
  User {self.user}
  IdentityFile {self.tmp}/other_key
Host * !fleet-nokey
  IdentityFile {self.tmp}/user_key
Host *
  IdentitiesOnly yes
  UserKnownHostsFile {self.tmp}/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
""")
        write(os.path.join(self.tmp, "known_hosts"),
              "".join(f"[127.0.0.1]:{port} {self.host_pub}\n" for port in ports.values()))

    def stop(self):
        for p in self.servers:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def client_env(host_a, ssh, **extra):
    e = host_a.env(PATH=ssh.bin + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    e.update(extra)
    return e


def ctl_run(host_a, ssh, *args, env=None, timeout=60):
    return ctl.run([host_a.ctl, *args], env=env or client_env(host_a, ssh), timeout=timeout)


def only_line(r):
    lines = r.err_lines
    return lines[0] if len(lines) == 1 else None


def test_one_host(a, b, ssh, ports, commands):
    a.pause()
    r = ctl_run(a, ssh, "-H", "fleet-a", "status")
    doms, p = a.list_domains(), a.props()
    head, _, table = r.out.partition("\n\n")
    _, rows = ctl.parse_table(table)
    problems = ctl.check_table_rows(rows, doms, time.time() * 1e6)
    tap.ok(r.rc == 0 and r.err == "" and "State:      paused" in head and f"Libvirt:    {p['LibvirtURI']}" in head
           and not problems, "-H alias status: host a's state and guests, over sshd", "\n".join(problems) + f"\n{r}")
    with open(ssh.argv_log) as f:
        argv = f.read().splitlines()
    tap.ok(argv and argv[-1] == "-xT -- fleet-a systemd-stdio-bridge",
           "sd-bus runs ssh -xT -- HOST systemd-stdio-bridge", argv)

    b.pause()
    target = f"{ssh.user}@127.0.0.1:{ports['fleet-b']}"
    r = ctl_run(a, ssh, "-H", target, "--json=short", "domains")
    try:
        j = json.loads(r.out)
        bdoms = b.list_domains()
        bad = [x["name"] for x in j["domains"] if not ctl.domain_json_matches(x, bdoms[x["name"]])[0]]
        ok = list(j) == ["domains"] and len(j["domains"]) == len(bdoms) and not bad
    except (ValueError, KeyError) as e:
        ok, bad = False, [str(e)]
    tap.ok(r.rc == 0 and r.err == "" and ok, "-H user@host:port domains --json: host b's guests", f"{bad}\n{r}")
    with open(ssh.argv_log) as f:
        argv = f.read().splitlines()
    tap.ok(argv[-1] == f"-xT -p {ports['fleet-b']} -- {ssh.user}@127.0.0.1 systemd-stdio-bridge",
           "a port in -H becomes ssh -p", argv[-1:])
    seen = []
    for c in commands.values():
        with open(c) as f:
            seen += f.read().splitlines()
    tap.ok(seen and all(s == "systemd-stdio-bridge" for s in seen),
           "the remote side is asked for systemd-stdio-bridge, nothing else", seen)

    before = a.prop("DomainThresholdBytes")
    r = ctl_run(a, ssh, "-H", "fleet-b", "set-threshold", "domain", "150M")
    tap.ok(r.rc == 0 and r.err == "" and b.prop("DomainThresholdBytes") == 150 * MiB
           and a.prop("DomainThresholdBytes") == before, "a setter over ssh changes that host only", r)

    r = ctl_run(a, ssh, "-H", "fleet-a", "top", "-n", "2", env=client_env(a, ssh, COLUMNS="100"))
    snaps = re.split(r"\n\n(?=memcoordd )", r.out)
    rows = [l.split()[0] for l in snaps[-1].splitlines()[4:]] if snaps else []
    tap.ok(r.rc == 0 and r.err == "" and len(snaps) == 2 and sorted(rows) == sorted(doms),
           "top -n 2 over ssh: two snapshots of host a", r)


def test_monitor(a, ssh):
    a.resume()
    p = subprocess.Popen([a.ctl, "-H", "fleet-a", "monitor"], env=client_env(a, ssh), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=ctl._die_with_parent)
    a.children.append(p)
    lines = ctl.LineReader(p)
    tick = lines.expect(lambda l: re.search(r" tick \d+: host free \S+, \d+ managed, \d+ changed$", l), timeout=20)
    a.manager_call("SetHostThreshold", "t", str(250 * MiB))
    changed = lines.expect(lambda l: l.endswith(" HostThresholdBytes: 250M"))
    rc, err = ctl.stop(p)
    tap.ok(tick and changed and rc == 0 and err == "", "monitor over ssh: ticks and a setting change; SIGINT exits 0",
           "\n".join(lines.lines[-5:]) + f"\nrc={rc} {err}")
    a.manager_call("SetHostThreshold", "t", str(200 * MiB))
    a.pause()


def test_fleet(a, b, ssh, ports, closed):
    bad = f"{ssh.user}@127.0.0.1:{closed}"
    r = ctl_run(a, ssh, "-H", "fleet-a", "-H", "fleet-b", "-H", bad, "status")
    line = only_line(r)
    tap.ok(r.rc == 0 and line is not None and line.startswith(f"memcoordctl: {bad}: ")
           and "Connection refused" in line and "ssh" in line,
           "fleet: the unreachable host is one line on stderr, naming it and why; exit 0", r)
    hosts_part, _, guests_part = r.out.partition("\n\n")
    hlines = [l.split() for l in hosts_part.splitlines() if l.strip()]
    header = hlines[0] if hlines else []
    hrows = {f[0]: f for f in hlines[1:]}
    pa, pb = a.props(), b.props()
    want = {"fleet-a": pa, "fleet-b": pb}
    problems = []
    if header[:3] != ["HOST", "VERSION", "STATE"] or sorted(hrows) != ["fleet-a", "fleet-b"]:
        problems.append(f"hosts table: {header} {sorted(hrows)}")
    else:
        col = {h: i for i, h in enumerate(header)}
        for host, p in want.items():
            f = hrows[host]
            if (f[col["STATE"]] != p["State"] or not ctl.size_matches(f[col["DOMAIN-T"]], p["DomainThresholdBytes"])
                    or not ctl.size_matches(f[col["HOST-T"]], p["HostThresholdBytes"])
                    or not ctl.size_matches(f[col["TOTAL"]], p["HostTotalBytes"])):
                problems.append(f"{host}: {f} vs {p}")
    tap.ok(not problems and hrows.get("fleet-b", [""] * 6)[5] == "150M",
           "fleet status: one row per host that answered, with its own settings", "\n".join(problems) + "\n" + r.out)
    problems = []

    lines = [l for l in guests_part.splitlines() if l.strip()]
    gheader = lines[0].split() if lines else []
    by_host = {"fleet-a": {}, "fleet-b": {}}
    for l in lines[1:]:
        host, rest = l.split(None, 1)
        f = rest.split(None, 8)
        if host in by_host:
            by_host[host][f[0]] = f
        else:
            problems.append(f"row of {host}")
    now = time.time() * 1e6
    problems += ctl.check_table_rows(by_host["fleet-a"], a.list_domains(), now)
    problems += ctl.check_table_rows(by_host["fleet-b"], b.list_domains(), now)
    tap.ok(gheader[:2] == ["HOST", "NAME"] and not problems and bad not in guests_part,
           "fleet status: one guest table, HOST first, each host's guests as that host reports them",
           "\n".join(problems) + "\n" + r.out)

    r = ctl_run(a, ssh, "--json=short", "-H", "fleet-a", "-H", bad, "-H", "fleet-b", "status")
    try:
        j = json.loads(r.out)
        keys = list(j)
        good = True
        for host, env in (("fleet-a", a), ("fleet-b", b)):
            doms = env.list_domains()
            good = good and j[host]["state"] == env.prop("State") and \
                j[host]["domain_threshold_bytes"] == env.prop("DomainThresholdBytes") and \
                sorted(x["name"] for x in j[host]["domains"]) == sorted(doms) and \
                all(ctl.domain_json_matches(x, doms[x["name"]])[0] for x in j[host]["domains"])
        err = j[bad].get("error", "")
    except (ValueError, KeyError, TypeError) as e:
        keys, good, err = [], False, str(e)
    tap.ok(r.rc == 0 and len(r.out.splitlines()) == 1 and keys == ["fleet-a", bad, "fleet-b"] and good
           and "Connection refused" in err and list(j[bad]) == ["error"],
           "fleet --json: one object keyed by host, in the order given; the failed host has its error", r)

    r = ctl_run(a, ssh, "-H", ".host", "-H", "fleet-b", "domains", "--no-legend")
    hosts = {}
    for l in r.out.splitlines():
        f = l.split()
        hosts.setdefault(f[0], set()).add(f[1])
    tap.ok(r.rc == 0 and r.err == "" and hosts == {".host": set(a.list_domains()), "fleet-b": set(b.list_domains())},
           "fleet: .host is this machine's bus, next to a remote host", r)

    r = ctl_run(a, ssh, "-H", "fleet-a", "-H", "fleet-a", "domains", "--no-legend")
    tap.ok(r.rc == 0 and "HOST" not in r.out and len(r.out.splitlines()) == len(a.list_domains())
           and not r.out.startswith("fleet-a"), "the same -H twice is one host", r)

    r = ctl_run(a, ssh, "-H", bad, "-H", "fleet-nokey", "domains")
    lines = r.err_lines
    tap.ok(r.rc == 1 and r.out == "" and len(lines) == 2 and lines[0].startswith(f"memcoordctl: {bad}: ")
           and "Connection refused" in lines[0] and lines[1].startswith("memcoordctl: fleet-nokey: ")
           and "Permission denied" in lines[1], "fleet: every host failed: one line each, exit 1", r)


def test_errors(a, ssh, closed):
    bad = f"{ssh.user}@127.0.0.1:{closed}"
    for argv in (["status"], ["--json", "domains"], ["pause"], ["monitor"], ["top", "-n", "1"]):
        r = ctl_run(a, ssh, "-H", bad, *argv)
        tap.ok(ctl.one_line_error(r, "Connection refused", "ssh"),
               f"unreachable host, one line naming the reason: {' '.join(argv)}", r)
    r = ctl_run(a, ssh, "-H", "fleet-nokey", "status")
    tap.ok(ctl.one_line_error(r, "Permission denied"), "a refused key is one line: ssh's reason", r)
    r = ctl_run(a, ssh, "-H", "fleet-a", "-H", "fleet-b", "pause")
    tap.ok(ctl.one_line_error(r, "pause", "status and domains") and a.prop("State") == "paused",
           "several -H with a verb for one host is refused", r)
    r = ctl_run(a, ssh, "-H", "fleet-b", "--user", "status")
    tap.ok(ctl.one_line_error(r, "--host", "--user"), "-H with --user is refused", r)


def test_mute(a, ssh):
    # Each host waits on its own: the fleet takes as long as its slowest host, bounded by that
    # host's ssh ConnectTimeout (which also covers the banner exchange).
    start = time.monotonic()
    r = ctl_run(a, ssh, "-H", "fleet-mute", "-H", "fleet-a", "-H", "fleet-b", "domains", "--no-legend")
    took = time.monotonic() - start
    line = only_line(r)
    hosts = {l.split()[0] for l in r.out.splitlines()}
    tap.ok(r.rc == 0 and hosts == {"fleet-a", "fleet-b"} and line is not None
           and line.startswith("memcoordctl: fleet-mute: ") and "timed out" in line and took < MUTE_TIMEOUT + 10,
           f"fleet: a host that never answers costs its ssh ConnectTimeout, the others are shown ({took:.1f} s)", r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memcoordd", required=True)
    ap.add_argument("--memcoordctl", required=True)
    ap.add_argument("--node-xml", required=True)
    args = ap.parse_args()
    args.node_xml = os.path.abspath(args.node_xml)
    missing = [t for t in ("dbus-daemon", "busctl", "ssh", "ssh-keygen") if not shutil.which(t)]
    if not os.path.exists(SSHD):
        missing.append(SSHD)
    if missing or os.geteuid() != 0:
        print(f"1..0 # SKIP needs root and {', '.join(missing) or 'sshd'}")
        return 0
    # sshd's privilege separation directory; the package's unit makes it at boot.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    a, b = ctl.Env(args), ctl.Env(args)
    ssh = Ssh(os.path.join(a.tmp, "ssh"), pwd.getpwuid(os.geteuid()).pw_name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        for env in (a, b):
            env.start_bus()
            env.start_daemon()
        commands = {}
        ports = {}
        for name, env in (("fleet-a", a), ("fleet-b", b)):
            ports[name], commands[name] = ssh.start_server(name, env.socket)
        # A host that accepts the connection and never says a word.
        mute = socket.socket()
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        ssh.write_client_config(ports, mute.getsockname()[1])
        closed = free_port()
        test_one_host(a, b, ssh, ports, commands)
        test_monitor(a, ssh)
        test_fleet(a, b, ssh, ports, closed)
        test_errors(a, ssh, closed)
        test_mute(a, ssh)
        mute.close()
    except Exception as e:
        import traceback
        tap.ok(False, f"harness: {type(e).__name__}: {e}", traceback.format_exc() + a.daemon_output())
    finally:
        ssh.stop()
        b.cleanup()
        a.cleanup()
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
