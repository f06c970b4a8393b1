#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The Debian package, end to end: builds the source package and memcoord and memcoordctl
# from a clean copy of the tree with dpkg-buildpackage (the unit suite and debug symbol
# packages left out, for time), checks them with lintian (no errors), installs them with
# apt-get, runs the installed programs (--version; memcoordd on libvirt's test driver and a
# private system-like bus with the installed bus policy; memcoordctl status against it;
# journalctl finds the installed catalog), then purges both and checks that nothing of them
# is left. Needs root: it installs packages on this machine. A memcoord already installed
# here is never touched: the test fails instead.
#
# Env: MC_SOURCE_ROOT (the tree), MC_PACKAGE_KEEP=1 keeps the work directory.
set -euo pipefail

src=${MC_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
packages=(memcoord memcoordctl)

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '== %s (%ds)\n' "$*" "$SECONDS"; }

# meson's code for a skipped test: like the bus tests, this one needs root.
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (installs the package)"; exit 77; }
for tool in dpkg-buildpackage lintian apt-get dbus-daemon journalctl; do
    command -v "$tool" >/dev/null || fail "missing $tool (tools/packages.txt)"
done
for p in "${packages[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "installed"; then
        fail "$p is already installed on this machine; not replacing it"
    fi
done

work=$(mktemp -d /tmp/mc-package-XXXXXX)
dbus_pid="" daemon_pid="" installed=0
cleanup() {
    set +e
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    [ -n "$dbus_pid" ] && kill "$dbus_pid" 2>/dev/null && wait "$dbus_pid" 2>/dev/null
    # A failed run leaves nothing installed behind it.
    [ "$installed" = 1 ] && DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" >/dev/null 2>&1
    [ "${MC_PACKAGE_KEEP:-0}" = 1 ] && echo "work directory kept: $work" || rm -rf "$work"
}
trap cleanup EXIT

version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
meson_version=$(sed -n "s/^ *version : '\([^']*\)'.*/\1/p" "$src/meson.build" | head -n1)
[ "$version" = "$meson_version" ] || fail "debian/changelog says $version, meson.build $meson_version"

step "Copying the tree (no build directories)"
tree=$work/memcoord-$version
mkdir -p "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and new files as they are in the work tree; ignored ones (build*/) stay out.
    (cd "$src" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf -) | tar -xf - -C "$tree"
else
    (cd "$src" && tar --exclude='./build*' -cf - .) | tar -xf - -C "$tree"
fi
[ -x "$tree/debian/rules" ] || fail "no debian/rules in the copy"

step "dpkg-buildpackage -us -uc"
start=$SECONDS
if ! (cd "$tree" && DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=2" dpkg-buildpackage -us -uc) >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    fail "dpkg-buildpackage failed"
fi
echo "built in $((SECONDS - start)) s"
changes=$work/memcoord_${version}_$(dpkg --print-architecture).changes
[ -f "$changes" ] || fail "no $changes"
debs=()
for p in "${packages[@]}"; do
    deb=$(ls "$work/${p}_${version}"_*.deb) || fail "no $p .deb"
    debs+=("$deb")
done

step "lintian"
# Errors fail the test; warnings and infos are printed for the record.
rc=0
lintian --fail-on error --display-info "$changes" >"$work/lintian.log" 2>&1 || rc=$?
grep -v '^running with root privileges' "$work/lintian.log" || true
[ "$rc" = 0 ] && ! grep -q '^E: ' "$work/lintian.log" || fail "lintian reports errors (exit $rc)"

step "apt-get install ${debs[*]##*/}"
installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log" >&2; fail "apt-get install failed"; }
for p in "${packages[@]}"; do
    [ "$(dpkg-query -W -f='${Status} ${Version}' "$p")" = "install ok installed $version" ] || fail "$p not installed"
    dpkg -L "$p" >"$work/$p.list"
done

# Debian's paths for bookworm.
expect() {
    local pkg=$1
    shift
    for f in "$@"; do
        grep -qx "$f" "$work/$pkg.list" || fail "$pkg does not ship $f"
        [ -e "$f" ] || fail "$f is not on disk"
    done
}
expect memcoord /usr/sbin/memcoordd /lib/systemd/system/memcoordd.service \
    /usr/share/dbus-1/system-services/org.memcoord.service /usr/share/dbus-1/system.d/org.memcoord.conf \
    /usr/share/dbus-1/interfaces/org.memcoord1.Manager.xml /usr/share/dbus-1/interfaces/org.memcoord1.Domain.xml \
    /usr/share/polkit-1/actions/org.memcoord.policy /usr/lib/systemd/catalog/memcoord.catalog \
    /usr/share/man/man8/memcoordd.8.gz /usr/share/man/man5/memcoord.conf.5.gz
expect memcoordctl /usr/bin/memcoordctl /usr/share/bash-completion/completions/memcoordctl \
    /usr/share/man/man1/memcoordctl.1.gz
grep -q 'ExecStart=/usr/sbin/memcoordd ' /lib/systemd/system/memcoordd.service || fail "unit does not start /usr/sbin/memcoordd"
grep -q '^Exec=/usr/sbin/memcoordd ' /usr/share/dbus-1/system-services/org.memcoord.service ||
    fail "bus activation file does not start /usr/sbin/memcoordd"

step "The installed programs"
[ "$(/usr/bin/memcoordctl --version)" = "memcoordctl $version" ] || fail "memcoordctl --version: $(/usr/bin/memcoordctl --version)"
[ "$(/usr/sbin/memcoordd --version)" = "memcoordd $version" ] || fail "memcoordd --version: $(/usr/sbin/memcoordd --version)"
man -l /usr/share/man/man1/memcoordctl.1.gz >/dev/null 2>&1 || fail "memcoordctl(1) does not render"

# The daemon from the installed files, on a private system-like bus that includes the
# installed bus policy; memcoordctl reads it.
sed -e "s|@SOCKET@|$work/bus.sock|" -e "s|@POLICY@|/usr/share/dbus-1/system.d/org.memcoord.conf|" \
    "$src/tests/data/system-like-bus.conf.in" >"$work/bus.conf"
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile 2>"$work/dbus.log" &
dbus_pid=$!
for _ in $(seq 100); do [ -S "$work/bus.sock" ] && break; sleep 0.05; done
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/bus.sock
printf '[Coordinator]\n' >"$work/memcoord.conf"
env -u JOURNAL_STREAM -u NOTIFY_SOCKET /usr/sbin/memcoordd --bus system \
    --connect "test://$src/tests/data/node-guests.xml" --config "$work/memcoord.conf" \
    --state-dir "$work/state" --interval 0.2 >"$work/memcoordd.log" 2>&1 &
daemon_pid=$!
ok=0
for _ in $(seq 100); do
    if /usr/bin/memcoordctl status >"$work/status.txt" 2>&1 && grep -q ' MiB -> ' "$work/memcoordd.log"; then
        ok=1
        break
    fi
    sleep 0.1
done
[ "$ok" = 1 ] || { cat "$work/memcoordd.log" "$work/status.txt" >&2; fail "installed memcoordd did not serve memcoordctl status"; }
cat "$work/status.txt"
grep -q 'vm1' "$work/status.txt" || fail "status lists no vm1"
grep -q 'vm1: 1024 MiB -> 972 MiB (claim)' "$work/memcoordd.log" || fail "no first claim for vm1 in the log"

kill "$daemon_pid"
wait "$daemon_pid" || fail "memcoordd did not exit cleanly on SIGTERM"
daemon_pid=""

# ---- The simulator demo from the installed files: memcoordd on a simulated host, no libvirt.
step "the simulator demo from the installed files"
[ -f /usr/share/memcoord/scenarios/demo.ini ] || fail "no scenarios installed"
env -u JOURNAL_STREAM -u NOTIFY_SOCKET /usr/sbin/memcoordd --bus system \
    --connect sim:/usr/share/memcoord/scenarios/demo.ini --sim-speed 20 --config "$work/memcoord.conf" \
    --state-dir "$work/state-sim" >"$work/memcoordd-sim.log" 2>&1 &
daemon_pid=$!
ok=0
for _ in $(seq 150); do
    if grep -q ' MiB -> .*(grant)' "$work/memcoordd-sim.log" && /usr/bin/memcoordctl status >"$work/status-sim.txt" 2>&1; then
        ok=1
        break
    fi
    sleep 0.1
done
[ "$ok" = 1 ] || { cat "$work/memcoordd-sim.log" >&2; fail "the installed memcoordd moved no memory on the simulator"; }
grep -q 'demo-1' "$work/status-sim.txt" || fail "status on the simulator lists no demo-1"
/usr/bin/memcoord-sim /usr/share/memcoord/scenarios/demo.ini --check >"$work/sim.txt" || fail "the installed memcoord-sim failed"
grep -q '^demo-1 ' "$work/sim.txt" || fail "memcoord-sim printed no row for demo-1"

kill "$daemon_pid"
wait "$daemon_pid" || fail "memcoordd did not exit cleanly on SIGTERM"
daemon_pid=""
kill "$dbus_pid"
wait "$dbus_pid" 2>/dev/null || true
dbus_pid=""

# systemd's dpkg trigger rebuilds the catalog database when the package lands.
journalctl --dump-catalog 5b0b7e3f2a8c4d3e9a1f6c2d4e8b7a10 2>/dev/null | grep -q '^Subject: Balloon of' ||
    fail "journalctl does not know memcoord's catalog after installation"

step "apt-get purge"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${packages[@]}" >"$work/purge.log" 2>&1 ||
    { cat "$work/purge.log" >&2; fail "apt-get purge failed"; }
installed=0
for p in "${packages[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "installed"; then
        fail "$p still installed"
    fi
    # Every file of the package is gone (directories other packages share may stay).
    while read -r f; do
        [ -d "$f" ] && continue
        [ -e "$f" ] || [ -L "$f" ] && fail "$f is left after purging $p"
    done <"$work/$p.list"
done
left=$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled -name 'memcoordd.service*' 2>/dev/null || true)
[ -z "$left" ] || fail "unit symlinks left: $left"
if journalctl --dump-catalog 5b0b7e3f2a8c4d3e9a1f6c2d4e8b7a10 >/dev/null 2>&1; then
    fail "the catalog database still has memcoord's entries after purge"
fi

echo "package test passed in $SECONDS s"
