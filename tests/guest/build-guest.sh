#!/bin/bash
# Build the tiny test guest from Debian packages:
#   OUTDIR/vmlinux        uncompressed kernel ELF (QEMU boots it through PVH)
#   OUTDIR/initramfs.gz   busybox-static, the virtio balloon and block modules, memdemand, /init
# The kernel .deb is cached in OUTDIR; a second run only redoes what is out of date.
#
# Needs: apt (apt-get download, run as root), dpkg-deb, tar, xz-utils, gzip,
# gcc + libc6-dev (static link), busybox-static.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
# In load order. virtio_blk (a guest's optional disk, /dev/vda) needs virtio_pci first.
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio_balloon"
export LC_ALL=C

log() { echo "build-guest: $*" >&2; }
die() { echo "build-guest: error: $*" >&2; exit 1; }

BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing (apt-get install busybox-static)"
# The guest has no libc: the dynamic busybox of the 'busybox' package won't run there.
if readelf -l "$BUSYBOX" 2>/dev/null | grep -q 'program interpreter'; then
	die "$BUSYBOX is dynamically linked; install busybox-static"
fi

# --- 1. the kernel package -------------------------------------------------
kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -n1
}

deb=$(ls -1t "$OUT"/linux-image-6.1.*-amd64_*_amd64.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
	pkg=$(kernel_pkg)
	if [ -z "$pkg" ]; then
		log "apt lists know no linux-image-amd64: running apt-get update"
		apt-get update -qq
		pkg=$(kernel_pkg)
	fi
	[ -n "$pkg" ] || die "cannot find the linux-image-6.1.*-amd64 package linux-image-amd64 depends on"
	log "downloading $pkg"
	tmp=$(mktemp -d "$OUT/.dl.XXXXXX")
	# -o APT::Sandbox::User=root: the _apt user may not write to OUTDIR.
	dl() { (cd "$tmp" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2); }
	if ! dl; then
		# Stale lists name a version the mirror no longer has: refresh once.
		log "download failed: running apt-get update and retrying"
		apt-get update -qq && pkg=$(kernel_pkg) && dl ||
			{ rm -rf "$tmp"; die "apt-get download $pkg failed"; }
	fi
	mv "$tmp"/*.deb "$OUT"/
	rm -rf "$tmp"
	deb=$(ls -1t "$OUT"/linux-image-6.1.*-amd64_*_amd64.deb | head -n1)
fi
log "kernel package: $(basename "$deb")"

# --- 2. vmlinux + modules ----------------------------------------------------
KX="$OUT/kernel"	# extracted files: vmlinuz-* and the modules we use
# .done holds the module list it was made for: a new module means a new extraction.
if [ ! -s "$OUT/vmlinux" ] || [ ! -f "$KX/.done" ] || [ "$deb" -nt "$KX/.done" ] ||
	[ "$(cat "$KX/.done")" != "$MODULES" ]; then
	rm -rf "$KX" "$OUT/vmlinux"
	mkdir -p "$KX/x"
	log "unpacking kernel and modules"
	dpkg-deb --fsys-tarfile "$deb" |
		tar -x -C "$KX/x" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*' \
			'./lib/modules/*/kernel/drivers/block/virtio_blk.ko*'
	vmlinuz=$(ls "$KX"/x/boot/vmlinuz-* | head -n1)
	mkdir -p "$KX/modules"
	for m in $MODULES; do
		f=$(find "$KX/x/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
		[ -n "$f" ] || die "module $m not in $(basename "$deb")"
		case "$f" in
		*.ko.xz) xz -dc "$f" >"$KX/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$KX/modules/$m.ko" ;;
		*) cp "$f" "$KX/modules/$m.ko" ;;
		esac
	done
	# The bzImage carries the kernel ELF as an XZ stream; unpack the first
	# candidate offset that yields an ELF (--single-stream ignores what follows).
	log "extracting vmlinux from $(basename "$vmlinuz")"
	found=
	for off in $(grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
		# (xz stops after the stream; a pipe from tail would then fail on SIGPIPE)
		if xz -dc --single-stream < <(tail -c +$((off + 1)) "$vmlinuz" 2>/dev/null) >"$OUT/vmlinux.tmp" 2>/dev/null &&
			[ "$(head -c 4 "$OUT/vmlinux.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
			found=$off
			break
		fi
	done
	[ -n "$found" ] || { rm -f "$OUT/vmlinux.tmp"; die "no XZ-compressed ELF found in $vmlinuz"; }
	mv "$OUT/vmlinux.tmp" "$OUT/vmlinux"
	cp "$vmlinuz" "$KX/"
	rm -rf "$KX/x"
	echo "$MODULES" >"$KX/.done"
fi

# --- 3. memdemand --------------------------------------------------------------
if [ ! -x "$OUT/memdemand" ] || [ "$HERE/memdemand.c" -nt "$OUT/memdemand" ]; then
	log "compiling memdemand"
	${CC:-gcc} -static -O2 -Wall -Wextra -s -o "$OUT/memdemand.tmp" "$HERE/memdemand.c"
	mv "$OUT/memdemand.tmp" "$OUT/memdemand"
fi

# --- 4. initramfs ---------------------------------------------------------------
stale=
for dep in "$OUT/memdemand" "$KX/.done" "$HERE/build-guest.sh" "$BUSYBOX"; do
	[ "$dep" -nt "$OUT/initramfs.gz" ] && stale=1
done
if [ ! -s "$OUT/initramfs.gz" ] || [ -n "$stale" ]; then
	log "building initramfs"
	R=$(mktemp -d "$OUT/.root.XXXXXX")
	trap 'rm -rf "$R"' EXIT
	mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,lib/modules}
	cp "$BUSYBOX" "$R/bin/busybox"
	ln -s busybox "$R/bin/sh"
	cp "$OUT/memdemand" "$R/bin/memdemand"
	cp "$KX"/modules/*.ko "$R/lib/modules/"
	# The kernel opens /dev/console for init before /init can mount devtmpfs.
	mknod -m 600 "$R/dev/console" c 5 1 2>/dev/null || log "no mknod (not root?): relying on the kernel's /dev/console"
	cat >"$R/init" <<EOF
#!/bin/sh
# /init of the memcoord test guest (generated by tests/guest/build-guest.sh).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
for m in $MODULES; do
	insmod /lib/modules/\$m.ko || echo "init: insmod \$m failed"
done
# Wait (up to 10 s) until the balloon driver has bound its device.
i=0
while [ -z "\$(ls /sys/bus/virtio/drivers/virtio_balloon 2>/dev/null | grep '^virtio')" ]; do
	i=\$((i + 1))
	[ \$i -gt 100 ] && { echo "init: virtio_balloon has no device"; break; }
	sleep 0.1
done
echo "init: modules loaded, starting memdemand"
/bin/memdemand &
wait \$!
rc=\$?
if [ \$rc -gt 128 ]; then
	echo "memdemand: killed by signal \$((rc - 128))"
else
	echo "memdemand: exited with status \$rc"
fi
# PID 1 must never exit (that would panic the kernel).
while :; do sleep 3600; done
EOF
	chmod 755 "$R/init"
	(cd "$R" && find . -mindepth 1 | sort | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) |
		gzip -9 -n >"$OUT/initramfs.gz.tmp"
	mv "$OUT/initramfs.gz.tmp" "$OUT/initramfs.gz"
	rm -rf "$R"
	trap - EXIT
fi

log "ready: $OUT/vmlinux ($(stat -c %s "$OUT/vmlinux") bytes), $OUT/initramfs.gz ($(stat -c %s "$OUT/initramfs.gz") bytes)"
