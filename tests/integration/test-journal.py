#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""memcoordd's journal entries, as journald would receive them.

libsystemd sends native-protocol datagrams to /run/systemd/journal/socket, a path it takes
from no setting. Each process here runs in a private mount namespace (unshare -m) whose
/run/systemd/journal is a directory of the test holding a socket the test bound, and with
$JOURNAL_STREAM naming its stderr, which is how memcoordd decides it runs under journald. The
test decodes the datagrams (KEY=VALUE lines, the binary-length form, memfd-passed entries)
and checks the fields of real balloon changes made on libvirt's test driver. Last, a real
systemd-journald stores them, and journalctl -x explains them from the project's catalog.
"""

import array
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mctest import (MEMCOORDD, NODE_GUESTS, NODE_URI, SOURCE_ROOT, TempDir, claim_chain_kib, kill_group,  # noqa: E402
                    require_root, require_tools, spawn, wait_for)

MESSAGES_H = os.path.join(SOURCE_ROOT, "include", "memcoord", "messages.h")


def message_ids():
    """MC_MESSAGE_* name (without the prefix) -> ID, from the header the daemon is built with."""
    with open(MESSAGES_H) as f:
        return dict(re.findall(r'^#define MC_MESSAGE_(\w+) "([0-9a-f]{32})"$', f.read(), re.M))


IDS = message_ids()


def parse_native(data):
    """One native-protocol entry -> list of (name, bytes). Either "NAME=value\\n", or, for
    values that hold a newline, "NAME\\n" + little-endian 64-bit length + value + "\\n"."""
    fields = []
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = nl + 1
        else:
            name = line
            (size,) = struct.unpack_from("<Q", data, nl + 1)
            start = nl + 1 + 8
            value = data[start:start + size]
            if len(value) != size or data[start + size:start + size + 1] != b"\n":
                raise ValueError(f"truncated binary field {name!r}")
            i = start + size + 1
        if not re.fullmatch(rb"[A-Z0-9_]+", name) or name.startswith(b"__"):
            raise ValueError(f"bad field name {name!r}")
        fields.append((name.decode(), value))
    return fields


class Entry:
    def __init__(self, fields, via_fd):
        self.fields = fields
        self.via_fd = via_fd

    def get(self, name):
        """The value of name (str), or None; a field given twice is an error here."""
        values = [v for k, v in self.fields if k == name]
        if len(values) > 1:
            raise AssertionError(f"{name} appears {len(values)} times in {self.fields}")
        return values[0].decode() if values else None

    def __repr__(self):
        return repr(dict((k, v.decode(errors="replace")) for k, v in self.fields))


class JournalSink:
    """An AF_UNIX datagram socket at DIR/socket, read like journald reads its native socket."""

    def __init__(self, tmp):
        self.dir = tmp.join("journal")
        os.mkdir(self.dir)
        self.path = os.path.join(self.dir, "socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.entries = []

    def close(self):
        self.sock.close()

    def drain(self, timeout=0.0):
        """Reads every datagram waiting (or arriving within timeout); returns the new entries."""
        new = []
        while select.select([self.sock], [], [], timeout)[0]:
            timeout = 0.0
            data, ancdata, flags, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(16 * 4))
            if flags & socket.MSG_TRUNC:
                raise AssertionError("a datagram was larger than the receive buffer")
            fds = []
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[:len(payload) - len(payload) % a.itemsize])
                    fds.extend(a)
            via_fd = False
            if fds:
                # A large entry: an empty datagram with a sealed memfd holding it.
                if data or len(fds) != 1:
                    raise AssertionError(f"fd-passed entry with {len(data)} bytes of data and {len(fds)} fds")
                with os.fdopen(fds[0], "rb") as f:
                    f.seek(0)  # the sender's offset is where it stopped writing
                    data = f.read()
                via_fd = True
            new.append(Entry(parse_native(data), via_fd))
        self.entries.extend(new)
        return new

    def wait(self, predicate, timeout=30, what="journal entries"):
        def ready():
            self.drain(0.05)
            found = [e for e in self.entries if predicate(e)]
            return found or None
        return wait_for(ready, timeout, interval=0.0, what=what)


# Run argv with the sink's directory as /run/systemd/journal, in a private mount namespace.
# /run/systemd is covered by an empty tmpfs first (or /run, where it does not exist), so
# nothing of the host's journal directory is touched or seen.
NAMESPACE_SCRIPT = r'''
set -e
top=/run/systemd
[ -d "$top" ] || top=/run
mount -t tmpfs -o mode=0755,size=1m memcoord-test "$top"
mkdir -p /run/systemd/journal
mount --bind "$0" /run/systemd/journal
exec "$@"
'''


def in_namespace(sink, argv):
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SCRIPT,
            sink.dir] + list(argv)


def journal_env(stderr_file):
    st = os.fstat(stderr_file.fileno())
    env = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "INVOCATION_ID", "LISTEN_FDS", "LISTEN_PID"):
        env.pop(k, None)
    env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    return env


CATALOG = os.path.join(SOURCE_ROOT, "daemon", "memcoord.catalog")


def catalog_entries():
    """ID -> (subject, full text) of daemon/memcoord.catalog."""
    with open(CATALOG) as f:
        text = f.read()
    out = {}
    for block in re.split(r"^-- ", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        subject = re.search(r"^Subject: (.+)$", body, re.M)
        out[head.strip()] = (subject.group(1) if subject else None, body)
    return out


class CatalogTest(unittest.TestCase):
    """messages.h and the catalog name the same IDs, and journalctl reads the catalog."""

    def test_ids_match_the_catalog(self):
        self.assertGreater(len(IDS), 20)
        self.assertEqual(len(set(IDS.values())), len(IDS), "an ID is used twice in messages.h")
        entries = catalog_entries()
        self.assertEqual(set(entries), set(IDS.values()))
        for ident, (subject, body) in entries.items():
            self.assertTrue(subject, f"{ident} has no Subject")
            self.assertIn("Defined-By: memcoord\n", body)
            self.assertRegex(body, r"\n\n\S", f"{ident} has no explanation")
            for field in re.findall(r"@([A-Z0-9_]+)@", body):
                self.assertTrue(field.startswith("MEMCOORD_"), f"{ident} uses @{field}@")

    @require_tools("journalctl")
    def test_journalctl_reads_it(self):
        tmp = TempDir()
        self.addCleanup(tmp.cleanup)
        catdir = tmp.join("usr", "lib", "systemd", "catalog")
        os.makedirs(catdir)
        with open(CATALOG) as src, open(os.path.join(catdir, "memcoord.catalog"), "w") as dst:
            dst.write(src.read())
        run = lambda *a: subprocess.run(["journalctl", "--root=" + tmp.path] + list(a), check=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        run("--update-catalog")
        listed = dict(line.split(" ", 1) for line in run("--list-catalog").stdout.decode().splitlines())
        entries = catalog_entries()
        for ident in IDS.values():
            self.assertEqual(listed.get(ident), "memcoord: " + entries[ident][0])
        shown = run("--dump-catalog", IDS["BALLOON_CHANGED"]).stdout.decode()
        self.assertIn("@MEMCOORD_FROM_KIB@ KiB", shown)


@require_root
@require_tools("unshare", "mount")
class ParserTest(unittest.TestCase):
    """The decoder against what libsystemd itself sends: plain, binary and memfd forms."""

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.sink = JournalSink(self.tmp)
        self.addCleanup(self.sink.close)

    def test_libsystemd_encodings(self):
        # 9 MiB is more than libsystemd's 8 MiB send buffer: it must fall back to a memfd.
        helper = r'''
import ctypes
lib = ctypes.CDLL("libsystemd.so.0")
lib.sd_journal_send.restype = ctypes.c_int
big = b"x" * (9 * 1024 * 1024)
for args in ([b"MESSAGE=plain", b"PRIORITY=6", b"TEST_FIELD=a=b"],
             [b"MESSAGE=two\nlines", b"PRIORITY=5"],
             [b"MESSAGE=big", b"TEST_BIG=%s", big]):
    r = lib.sd_journal_send(*[ctypes.c_char_p(a) for a in args], None)
    if r < 0:
        raise SystemExit(f"sd_journal_send: {r}")
'''
        proc = subprocess.run(in_namespace(self.sink, [sys.executable, "-c", helper]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode(errors="replace"))
        entries = self.sink.drain(1.0)
        self.assertEqual(len(entries), 3, entries)
        plain, lines, big = entries
        self.assertEqual((plain.get("MESSAGE"), plain.get("PRIORITY"), plain.get("TEST_FIELD")),
                         ("plain", "6", "a=b"))
        self.assertFalse(plain.via_fd)
        self.assertEqual(lines.get("MESSAGE"), "two\nlines")
        self.assertEqual(lines.get("PRIORITY"), "5")
        self.assertTrue(big.via_fd, "a 9 MiB entry came as a datagram")
        self.assertEqual(len(big.get("TEST_BIG")), 9 * 1024 * 1024)

    def test_parse_rejects_truncated(self):
        with self.assertRaises(ValueError):
            parse_native(b"MESSAGE\n" + struct.pack("<Q", 10) + b"short\n")


@require_root
@require_tools("unshare", "mount")
class DaemonJournalTest(unittest.TestCase):

    def setUp(self):
        self.tmp = TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.sink = JournalSink(self.tmp)
        self.addCleanup(self.sink.close)
        self.config = self.tmp.join("memcoord.conf")
        with open(self.config, "w") as f:
            f.write("[Coordinator]\n")

    def start(self, *args, config=None):
        self.stderr = open(self.tmp.join("memcoordd.stderr"), "w+")
        self.addCleanup(self.stderr.close)
        argv = [MEMCOORDD, "--bus", "none", "--connect", NODE_URI, "--config", config or self.config,
                "--interval", "0.2"] + list(args)
        proc = spawn(in_namespace(self.sink, argv), env=journal_env(self.stderr), stdout=subprocess.DEVNULL,
                     stderr=self.stderr)
        self.addCleanup(kill_group, proc)
        return proc

    def stderr_text(self):
        self.stderr.flush()
        with open(self.stderr.name) as f:
            return f.read()

    def by_id(self, name):
        return lambda e: e.get("MESSAGE_ID") == IDS[name]

    def assert_common(self, e):
        self.assertEqual(e.get("SYSLOG_IDENTIFIER"), "memcoordd", e)
        self.assertRegex(e.get("MESSAGE") or "", r"\S", e)
        self.assertIn(e.get("PRIORITY"), [str(p) for p in range(8)], e)
        self.assertTrue((e.get("CODE_FILE") or "").endswith(".c"), e)
        self.assertRegex(e.get("CODE_LINE") or "", r"^\d+$", e)

    def test_balloon_changes_and_skips(self):
        proc = self.start()
        balloon = [n for n, g in NODE_GUESTS.items() if g[3]]
        chains = {n: claim_chain_kib(NODE_GUESTS[n][1] * 1024, 3) for n in balloon}

        def enough(_):
            changes = [e for e in self.sink.entries if e.get("MESSAGE_ID") == IDS["BALLOON_CHANGED"]]
            return all(sum(1 for e in changes if e.get("MEMCOORD_DOMAIN") == n) >= 3 for n in balloon)
        self.sink.wait(enough, timeout=60, what="three balloon changes per guest")
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        self.assertEqual(proc.returncode, 0)
        self.sink.drain(0.2)
        # Under journald nothing goes to stderr: every line was an entry.
        self.assertEqual(self.stderr_text(), "")

        entries = self.sink.entries
        known = set(IDS.values())
        for e in entries:
            self.assert_common(e)
            self.assertIn(e.get("MESSAGE_ID"), known, f"entry without a catalogued MESSAGE_ID: {e}")

        for name in balloon:
            uuid = NODE_GUESTS[name][0]
            mine = [e for e in entries if e.get("MESSAGE_ID") == IDS["BALLOON_CHANGED"]
                    and e.get("MEMCOORD_DOMAIN") == name]
            for e, (from_kib, to_kib) in zip(mine, chains[name]):
                self.assertEqual(e.get("PRIORITY"), "6", e)
                self.assertEqual(e.get("MEMCOORD_UUID"), uuid, e)
                self.assertEqual(e.get("MEMCOORD_FROM_KIB"), str(from_kib), e)
                self.assertEqual(e.get("MEMCOORD_TO_KIB"), str(to_kib), e)
                self.assertEqual(e.get("MEMCOORD_REASON"), "claim", e)
                self.assertEqual(e.get("MEMCOORD_DRY_RUN"), "0", e)
                self.assertEqual(e.get("MESSAGE"),
                                 f"{name}: {from_kib // 1024} MiB -> {to_kib // 1024} MiB (claim)")
                self.assertTrue(e.get("CODE_FILE").endswith("manager.c"), e)

        skips = [e for e in entries if e.get("MESSAGE_ID") == IDS["SKIP_NO_BALLOON"]]
        self.assertEqual(len(skips), 1, skips)
        self.assertEqual(skips[0].get("MEMCOORD_DOMAIN"), "vm-noballoon")
        self.assertEqual(skips[0].get("MEMCOORD_UUID"), NODE_GUESTS["vm-noballoon"][0])
        self.assertEqual(skips[0].get("MEMCOORD_REASON"), "no-balloon")
        self.assertEqual(skips[0].get("PRIORITY"), "6")
        self.assertNotIn("vm-noballoon", [e.get("MEMCOORD_DOMAIN") for e in entries
                                          if e.get("MESSAGE_ID") == IDS["BALLOON_CHANGED"]])

        appeared = {e.get("MEMCOORD_DOMAIN") for e in entries if e.get("MESSAGE_ID") == IDS["GUEST_APPEARED"]}
        self.assertEqual(appeared, set(NODE_GUESTS))
        for name in ("CONNECTED", "STARTED"):
            (e,) = [e for e in entries if e.get("MESSAGE_ID") == IDS[name]]
            self.assertEqual(e.get("MEMCOORD_URI"), NODE_URI, e)
        (stop,) = [e for e in entries if e.get("MESSAGE_ID") == IDS["STOPPING"]]
        self.assertEqual(stop.get("MESSAGE"), f"Stopping on signal {int(signal.SIGTERM)}")
        self.assertIs(entries[-1], stop)

    def test_dry_run_has_its_own_id(self):
        proc = self.start("--dry-run")
        found = self.sink.wait(self.by_id("BALLOON_DRY_RUN"), what="a dry-run entry")
        kill_group(proc)
        e = found[0]
        first = claim_chain_kib(NODE_GUESTS[e.get("MEMCOORD_DOMAIN")][1] * 1024, 1)[0]
        self.assertEqual((e.get("MEMCOORD_FROM_KIB"), e.get("MEMCOORD_TO_KIB")), tuple(map(str, first)))
        self.assertEqual(e.get("MEMCOORD_DRY_RUN"), "1")
        self.assertTrue(e.get("MESSAGE").endswith(" [dry-run]"), e)
        self.sink.drain(0.1)
        self.assertEqual([e for e in self.sink.entries if e.get("MESSAGE_ID") == IDS["BALLOON_CHANGED"]], [])

    def test_startup_error(self):
        bad = self.tmp.join("bad.conf")
        with open(bad, "w") as f:
            f.write("[Coordinator]\nNoSuchKey=1\n")
        proc = self.start(config=bad)
        self.assertNotEqual(proc.wait(20), 0)
        entries = self.sink.drain(0.2)
        self.assertEqual(len(entries), 1, entries)
        e = entries[0]
        self.assertEqual(e.get("MESSAGE_ID"), IDS["STARTUP_FAILED"], e)
        self.assertEqual(e.get("PRIORITY"), "3", e)
        self.assertIn("NoSuchKey", e.get("MESSAGE"))
        self.assertEqual(self.stderr_text(), "")

    def test_not_the_journal_without_a_matching_stream(self):
        """$JOURNAL_STREAM naming another file: plain lines on stderr, nothing sent."""
        self.stderr = open(self.tmp.join("memcoordd.stderr"), "w+")
        self.addCleanup(self.stderr.close)
        other = open(self.tmp.join("other"), "w")
        self.addCleanup(other.close)
        argv = [MEMCOORDD, "--bus", "none", "--connect", NODE_URI, "--config", self.config, "--interval", "0.2"]
        proc = spawn(in_namespace(self.sink, argv), env=journal_env(other), stdout=subprocess.DEVNULL,
                     stderr=self.stderr)
        self.addCleanup(kill_group, proc)
        wait_for(lambda: " MiB -> " in self.stderr_text(), 30, what="a balloon line on stderr")
        kill_group(proc)
        self.assertEqual(self.sink.drain(0.2), [])


# A real systemd-journald in a private mount namespace: its runtime journal and sockets on a
# tmpfs, kernel messages and forwarding off, and the project's catalog (alone) compiled into
# the catalog database that journalctl -x reads. Then memcoordd runs under it for a while.
JOURNALD_SCRIPT = r'''
set -e
work=$1 catalog=$2
shift 2
top=/run/systemd
[ -d "$top" ] || top=/run
mount -t tmpfs -o mode=0755 memcoord-test "$top"
mkdir -p /run/log /run/systemd/journald.conf.d
mount -t tmpfs -o mode=0755 memcoord-test /run/log
printf '[Journal]\nStorage=volatile\nReadKMsg=no\nAudit=no\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\nForwardToKMsg=no\n' \
    >/run/systemd/journald.conf.d/memcoord-test.conf
mkdir -p "$work/catalog" "$work/catalog-db"
cp "$catalog" "$work/catalog/"
mount --bind "$work/catalog" /usr/lib/systemd/catalog
mount --bind "$work/catalog-db" /var/lib/systemd/catalog
journalctl --update-catalog
/lib/systemd/systemd-journald >"$work/journald.log" 2>&1 &
journald=$!
for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
[ -S /run/systemd/journal/socket ] || { echo "systemd-journald did not start" >&2; exit 1; }
: >"$work/stderr"
JOURNAL_STREAM=$(stat -c '%d:%i' "$work/stderr") "$@" 2>>"$work/stderr" &
daemon=$!
# Until vm1's first balloon change is stored (a few ticks; longer on a loaded machine).
for _ in $(seq 300); do
    journalctl -q --no-pager MESSAGE_ID=@BALLOON@ MEMCOORD_DOMAIN=vm1 | grep -q . && break
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
done
kill -TERM "$daemon"
wait "$daemon" || echo "memcoordd exited with $?" >&2
journalctl --sync
journalctl -x --no-pager MESSAGE_ID=@BALLOON@ MEMCOORD_DOMAIN=vm1 >"$work/x-balloon.txt"
journalctl -x --no-pager MESSAGE_ID=@SKIP@ >"$work/x-skip.txt"
journalctl -o json --no-pager SYSLOG_IDENTIFIER=memcoordd >"$work/entries.json"
kill "$journald"
wait "$journald" || true
'''


@require_root
@require_tools("unshare", "mount", "journalctl", "/lib/systemd/systemd-journald")
class JournaldTest(unittest.TestCase):
    """journalctl -x explains memcoordd's messages, as stored by a real systemd-journald."""

    def test_journalctl_x(self):
        tmp = TempDir()
        self.addCleanup(tmp.cleanup)
        config = tmp.join("memcoord.conf")
        with open(config, "w") as f:
            f.write("[Coordinator]\n")
        script = JOURNALD_SCRIPT.replace("@BALLOON@", IDS["BALLOON_CHANGED"]).replace("@SKIP@", IDS["SKIP_NO_BALLOON"])
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", tmp.path, CATALOG,
                MEMCOORDD, "--bus", "none", "--connect", NODE_URI, "--config", config, "--interval", "0.2"]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode(errors="replace"))
        self.assertEqual(proc.stderr.decode(), "")
        with open(tmp.join("stderr")) as f:
            self.assertEqual(f.read(), "", "memcoordd wrote to stderr under journald")

        with open(tmp.join("x-balloon.txt")) as f:
            balloon = f.read()
        first = claim_chain_kib(NODE_GUESTS["vm1"][1] * 1024, 1)[0]
        self.assertIn("memcoordd[", balloon)
        self.assertIn(f"vm1: {first[0] // 1024} MiB -> {first[1] // 1024} MiB (claim)", balloon)
        # The catalog's text with the entry's fields filled in.
        self.assertIn("\u2591\u2591 Subject: Balloon of vm1 changed", balloon)
        self.assertIn(f"memcoordd set the balloon of vm1 from {first[0]} KiB to", balloon)
        with open(tmp.join("x-skip.txt")) as f:
            skip = f.read()
        self.assertIn("vm-noballoon: no-balloon, left alone", skip)
        self.assertIn("Subject: Guest vm-noballoon is left alone: no balloon", skip)

        with open(tmp.join("entries.json")) as f:
            entries = [json.loads(line) for line in f if line.strip()]
        self.assertTrue(entries)
        for e in entries:
            self.assertEqual(e.get("_TRANSPORT"), "journal", e)
            self.assertIn(e.get("MESSAGE_ID"), set(IDS.values()), e)
        changes = [e for e in entries if e.get("MESSAGE_ID") == IDS["BALLOON_CHANGED"] and e.get("MEMCOORD_DOMAIN") == "vm1"]
        self.assertEqual((changes[0]["MEMCOORD_FROM_KIB"], changes[0]["MEMCOORD_TO_KIB"]), tuple(map(str, first)))
        self.assertEqual(changes[0]["PRIORITY"], "6")


if __name__ == "__main__":
    unittest.main(verbosity=2)
