#!/bin/bash
# The memcoord demo, on real guests: starts libvirtd (if none runs) and a private system-like
# D-Bus, boots three tiny QEMU guests (512 MiB each, up to 1 GiB), starts memcoordd, and
# has one guest eat 700 MiB and free it again while `memcoordctl status` shows the memory
# moving. Idle guests give memory back; the busy one gets it; afterwards it flows back.
# Everything it started is stopped on exit, also on Ctrl-C. Needs root (libvirtd, QEMU).
#
# With --sim, the same show on the simulator (tests/sim/demo.ini): memcoordd --connect sim:
# on a private session bus, as a normal user, without libvirtd or QEMU; simulated time runs
# --speed times faster than the clock (default 5). Build dependencies must be installed.
#
# Usage: tools/demo.sh [SECONDS]                 (how long to watch, default 150)
#        tools/demo.sh --sim [--speed N] [SECONDS]  (simulated seconds, default 250)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

if [ "${1:-}" = "--sim" ]; then
    shift
    speed=5
    if [ "${1:-}" = "--speed" ]; then speed=$2; shift 2; fi
    sim_sec=${1:-250}
    builddir=${BUILDDIR:-build}
    scenario=$top/tests/sim/demo.ini
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
    say "Building"
    [ -d "$builddir" ] || meson setup "$builddir" >/dev/null
    ninja -C "$builddir" >/dev/null
    daemon=$top/$builddir/daemon/memcoordd
    ctl=$top/$builddir/client/memcoordctl
    work=$(mktemp -d "${TMPDIR:-/tmp}/memcoord-sim-demo.XXXXXX")
    dbus_pid="" daemon_pid=""
    cleanup_sim() {
        set +e
        [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
        [ -n "$dbus_pid" ] && kill "$dbus_pid" 2>/dev/null
    }
    trap cleanup_sim EXIT
    trap 'exit 130' INT TERM

    say "Starting a private session bus ($work)"
    cat >"$work/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$work/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
CONF
    dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile &
    dbus_pid=$!
    for _ in $(seq 50); do [ -S "$work/bus.sock" ] && break; sleep 0.1; done
    export DBUS_SESSION_BUS_ADDRESS=unix:path=$work/bus.sock

    say "Starting memcoordd on the simulator: $(grep -m1 '^Description=' "$scenario" | cut -d= -f2-)"
    echo "   $daemon --connect sim:$scenario --bus session --sim-speed $speed"
    "$daemon" --connect "sim:$scenario" --bus session --sim-speed "$speed" --state-dir "$work/state" \
        >"$work/memcoordd.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 50); do "$ctl" --user status >/dev/null 2>&1 && break; sleep 0.2; done

    start=$(date +%s.%N)
    while :; do
        t=$(awk -v a="$(date +%s.%N)" -v b="$start" -v s="$speed" 'BEGIN { printf "%d", (a - b) * s }')
        [ "$t" -ge "$sim_sec" ] && break
        say "simulated t=${t}s  memcoordctl --user status"
        "$ctl" --user status || true
        echo "-- last balloon changes:"
        grep -E ' MiB -> ' "$work/memcoordd.log" | tail -n 4 || true
        sleep "$(awk -v s="$speed" 'BEGIN { printf "%.2f", 10 / s }')"
    done
    say "The same scenario in the batch simulator (as fast as the CPU allows), with a plot"
    "$top/$builddir/daemon/memcoord-sim" "$scenario" --duration "$sim_sec" --plot "$work/demo.png" || true
    say "Done: balloon changes in $work/memcoordd.log, the plot in $work/demo.png"
    exit 0
fi

watch_sec=${1:-150}
work=${MC_DEMO_DIR:-/var/tmp/memcoord-demo}
kit=${MC_KIT_DIR:-/var/tmp/memcoord-kit}
builddir=${BUILDDIR:-build}
prefix=demo-

[ "$(id -u)" -eq 0 ] || { echo "demo.sh: needs root (it starts libvirtd and QEMU guests)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

tools/deps.sh
say "Building"
[ -d "$builddir" ] || meson setup "$builddir" >/dev/null
ninja -C "$builddir" >/dev/null
daemon=$top/$builddir/daemon/memcoordd
ctl=$top/$builddir/client/memcoordctl

rm -rf "$work"
mkdir -p "$work/console"
dbus_pid="" daemon_pid="" sampler_pid=""
cleanup() {
    set +e
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    tests/guest/guests.py down --prefix "$prefix" >/dev/null 2>&1
    MC_PREFIX=$prefix tests/guest/libvirt-host.sh stop "$work/host" >/dev/null 2>&1
    [ -n "$dbus_pid" ] && kill "$dbus_pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Building the tiny guest (Debian kernel + busybox initramfs)"
tests/guest/build-guest.sh "$kit"

say "Starting libvirtd and a private system bus"
MC_PREFIX=$prefix tests/guest/libvirt-host.sh start "$work/host"
sed -e "s|@SOCKET@|$work/bus.sock|" -e "s|@POLICY@|$top/dbus/org.memcoord.conf|" \
    tests/data/system-like-bus.conf.in >"$work/bus.conf"
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile &
dbus_pid=$!
for _ in $(seq 50); do [ -S "$work/bus.sock" ] && break; sleep 0.1; done
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/bus.sock

say "Booting three guests: ${prefix}1 will eat 700 MiB after 20 s, hold it 25 s, and free it"
tests/guest/guests.py up --count 3 --prefix "$prefix" --kernel-dir "$kit" --console-dir "$work/console" \
    --current-mib 512 --max-mib 1024 \
    --schedule "1=idle:20,ramp:700:40,hold:25,free,idle" --schedule "*=idle"

say "Starting memcoordd (1 s interval; log in $work/memcoordd.log)"
cat >"$work/memcoord.conf" <<CONF
[Coordinator]
IntervalSec=1
DomainThreshold=100M
HostThreshold=200M
CONF
"$daemon" --bus system --connect qemu:///system --config "$work/memcoord.conf" \
    --state-dir "$work/state" >"$work/memcoordd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 50); do "$ctl" status >/dev/null 2>&1 && break; sleep 0.2; done

/usr/bin/python3 tests/guest/sampler.py record --out "$work/demo.csv" --prefix "$prefix" \
    --duration "$watch_sec" >/dev/null 2>&1 &
sampler_pid=$!

start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt "$watch_sec" ]; do
    say "t=$(( $(date +%s) - start ))s  memcoordctl status"
    "$ctl" status || true
    echo "-- last balloon changes:"
    grep -E ' MiB -> ' "$work/memcoordd.log" | tail -n 4 || true
    sleep 10
done
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""

if /usr/bin/python3 tests/guest/plot.py "$work/demo.csv" "$work/demo.png" \
        --phase 20:ramp --phase 60:hold --phase 85:free >/dev/null 2>&1; then
    say "Plot of actual and unused per guest: $work/demo.png"
fi
say "Done: every balloon change is in $work/memcoordd.log"
