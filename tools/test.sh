#!/bin/sh
# Runs every test: unit, integration (libvirt test driver, private system-like bus), the CLI,
# and the real-guest end-to-end scenarios, built with AddressSanitizer and UBSan.
# Usage: tools/test.sh [extra meson test arguments, e.g. --suite unit]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tools/deps.sh
builddir=${BUILDDIR:-build-test}
if [ ! -d "$builddir" ]; then
    meson setup "$builddir" -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C "$builddir"
exec meson test -C "$builddir" --print-errorlogs "$@"
