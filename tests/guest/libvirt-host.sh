#!/bin/bash
# Run libvirtd by hand (no systemd, no virtlogd) for the real-guest tests.
#
#   libvirt-host.sh start  [STATEDIR]   prepare the host, start libvirtd if none runs,
#                                       wait until qemu:///system answers
#   libvirt-host.sh stop   [STATEDIR]   destroy the test guests (names starting with
#                                       $MC_PREFIX, default "mc-"), kill their leftover
#                                       QEMU processes, stop libvirtd if `start` started it
#   libvirt-host.sh status [STATEDIR]
#
# STATEDIR (default /run/memcoord-guest) remembers whether `start` started libvirtd,
# so `stop` never kills a libvirtd somebody else runs. Both are safe to call twice.
# Must run as root.
set -euo pipefail

CMD=${1:-}
STATE=${2:-${MC_STATEDIR:-/run/memcoord-guest}}
PREFIX=${MC_PREFIX:-mc-}
URI=qemu:///system
QEMU_CONF=/etc/libvirt/qemu.conf
START_TIMEOUT=${MC_LIBVIRTD_TIMEOUT:-120}
MARK_BEGIN="# BEGIN memcoord test kit (tests/guest/libvirt-host.sh)"
MARK_END="# END memcoord test kit"

log() { echo "libvirt-host: $*" >&2; }
die() { echo "libvirt-host: error: $*" >&2; exit 1; }

usage() { echo "usage: $0 start|stop|status [STATEDIR]" >&2; exit 2; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root"; }

# PIDs of processes whose executable name is exactly $1.
pids_named() {
	local p comm
	for p in /proc/[0-9]*; do
		comm=$(cat "$p/comm" 2>/dev/null) || continue
		[ "$comm" = "$1" ] && echo "${p#/proc/}"
	done
	return 0
}

libvirtd_pid() {
	# Prefer the pidfile of a daemon started by root; fall back to a scan.
	local pid
	if [ -r /run/libvirtd.pid ]; then
		pid=$(cat /run/libvirtd.pid 2>/dev/null || true)
		if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = libvirtd ]; then
			echo "$pid"
			return
		fi
	fi
	pids_named libvirtd | head -n1
}

virsh_ok() { timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1; }

configure_qemu_conf() {
	mkdir -p /etc/libvirt
	[ -f "$QEMU_CONF" ] || : >"$QEMU_CONF"
	local tmp
	tmp=$(mktemp "$QEMU_CONF.XXXXXX")
	# Drop our previous block and any active setting of the keys we own, then
	# append the block: the result is the same however often this runs.
	awk -v b="$MARK_BEGIN" -v e="$MARK_END" '
		$0 == b { skip = 1; next }
		$0 == e { skip = 0; next }
		skip { next }
		/^[ \t]*(user|group|dynamic_ownership|stdio_handler)[ \t]*=/ { next }
		{ print }
	' "$QEMU_CONF" >"$tmp"
	cat >>"$tmp" <<EOF
$MARK_BEGIN
user = "root"
group = "root"
dynamic_ownership = 0
stdio_handler = "file"
$MARK_END
EOF
	if cmp -s "$tmp" "$QEMU_CONF"; then
		rm -f "$tmp"
	else
		chmod 644 "$tmp"
		mv "$tmp" "$QEMU_CONF"
		log "updated $QEMU_CONF"
	fi
}

prepare_host() {
	mkdir -p /var/log/libvirt /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu /run/libvirt
	# Debian's QEMU driver looks these up before it reads qemu.conf.
	getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
	getent passwd libvirt-qemu >/dev/null ||
		useradd --system --no-create-home --home-dir /var/lib/libvirt \
			--shell /usr/sbin/nologin -g libvirt-qemu libvirt-qemu
	configure_qemu_conf
}

do_start() {
	need_root
	command -v libvirtd >/dev/null || die "libvirtd not installed (libvirt-daemon, libvirt-daemon-driver-qemu)"
	command -v virsh >/dev/null || die "virsh not installed (libvirt-clients)"
	mkdir -p "$STATE"
	prepare_host
	local pid
	pid=$(libvirtd_pid)
	if [ -n "$pid" ]; then
		log "libvirtd already running (pid $pid)"
		# A libvirtd we started earlier stays ours; a stale record goes.
		if [ -f "$STATE/libvirtd.started" ] && [ "$(cat "$STATE/libvirtd.started")" != "$pid" ]; then
			rm -f "$STATE/libvirtd.started"
		fi
	else
		# Keep no pipe of the caller open in the daemon (a CI `| tee` would hang).
		libvirtd -d </dev/null >>"$STATE/libvirtd.out" 2>&1 ||
			die "libvirtd -d failed: $(tail -n 5 "$STATE/libvirtd.out")"
		for _ in $(seq 50); do
			pid=$(libvirtd_pid)
			[ -n "$pid" ] && break
			sleep 0.1
		done
		[ -n "$pid" ] || die "libvirtd did not start: $(tail -n 5 "$STATE/libvirtd.out")"
		echo "$pid" >"$STATE/libvirtd.started"
		log "started libvirtd (pid $pid)"
	fi
	local deadline=$((SECONDS + START_TIMEOUT))
	until virsh_ok; do
		if [ -z "$(libvirtd_pid)" ]; then
			die "libvirtd died while starting; last log lines: $(tail -n 5 /var/log/libvirt/libvirtd.log 2>/dev/null)"
		fi
		[ $SECONDS -lt $deadline ] || die "$URI did not answer within ${START_TIMEOUT}s"
		sleep 0.2
	done
	log "$URI answers after ${SECONDS}s ($(virsh -q -c "$URI" version 2>/dev/null | grep -i 'running hypervisor' | sed 's/.*: *//'))"
}

# QEMU processes of our guests: libvirt names them with "-name guest=NAME,...".
our_qemu_pids() {
	local p
	for p in /proc/[0-9]*; do
		case "$(cat "$p/comm" 2>/dev/null)" in qemu-system-*) ;; *) continue ;; esac
		if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -q "^guest=$PREFIX"; then
			echo "${p#/proc/}"
		fi
	done
	return 0
}

kill_pid() {	# kill_pid PID WHAT: SIGTERM, wait up to 10 s, then SIGKILL
	local pid=$1 what=$2
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "$what (pid $pid) ignored SIGTERM: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
}

do_stop() {
	need_root
	local name pid
	if virsh_ok; then
		for name in $(virsh -q -c "$URI" list --name 2>/dev/null); do
			case "$name" in "$PREFIX"*)
				log "destroying $name"
				timeout 30 virsh -q -c "$URI" destroy "$name" >/dev/null 2>&1 || true ;;
			esac
		done
	fi
	if [ -f "$STATE/libvirtd.started" ]; then
		pid=$(cat "$STATE/libvirtd.started")
		if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = libvirtd ]; then
			log "stopping libvirtd (pid $pid)"
			kill_pid "$pid" libvirtd
		fi
		rm -f "$STATE/libvirtd.started"
	else
		log "libvirtd was not started by us: leaving it alone"
	fi
	for pid in $(our_qemu_pids); do
		log "killing leftover QEMU of a test guest (pid $pid)"
		kill_pid "$pid" qemu
	done
	return 0
}

do_status() {
	local pid
	pid=$(libvirtd_pid)
	if [ -n "$pid" ]; then
		if [ -f "$STATE/libvirtd.started" ] && [ "$(cat "$STATE/libvirtd.started")" = "$pid" ]; then
			echo "libvirtd: running (pid $pid, started by libvirt-host.sh)"
		else
			echo "libvirtd: running (pid $pid, not ours)"
		fi
	else
		echo "libvirtd: not running"
	fi
	if [ -n "$pid" ] && virsh_ok; then
		echo "$URI: answers"
		virsh -q -c "$URI" list --all 2>/dev/null | sed 's/^/  /'
	else
		echo "$URI: no answer"
	fi
	local q
	q=$(our_qemu_pids | tr '\n' ' ')
	echo "qemu of test guests ($PREFIX*): ${q:-none}"
}

case "$CMD" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) usage ;;
esac
