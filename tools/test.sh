#!/bin/sh
# Runs every test: unit, integration (libvirt test driver, private system-like bus), the CLI,
# and the real-guest end-to-end scenarios, built with AddressSanitizer and UBSan; then the
# fuzzers (suite fuzz) in a clang build.
# Usage: tools/test.sh [extra meson test arguments, e.g. --suite unit]
#
# The build directories are (re)configured with their options every time, so an old directory
# cannot keep old options. A suite that skips (exit 77: not root, a tool missing) fails the run:
# every suite here is expected to run. MC_ALLOW_SKIP=1 lets skips through (say so if you use it).
# FUZZ=0 leaves out the fuzzers; FUZZ_SECONDS sets how long each runs (default 20).
# VALGRIND=0 leaves out the memcheck run of memcoordd on the simulator.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tools/deps.sh

# setup DIR OPTIONS...: configure DIR, or reconfigure it with these options if it exists.
setup() {
    dir=$1
    shift
    if [ -d "$dir/meson-private" ]; then
        meson setup --reconfigure "$dir" "$@" >/dev/null
    else
        meson setup "$dir" "$@" >/dev/null
    fi
}

# check_skips DIR: fails if any test of the last run in DIR was skipped.
check_skips() {
    python3 - "$1/meson-logs/testlog.json" "${MC_ALLOW_SKIP:-0}" <<'PY'
import json, sys
skipped = [t["name"] for t in map(json.loads, open(sys.argv[1])) if t.get("result") == "SKIP"]
if skipped:
    print("test.sh: skipped, so not passed: " + ", ".join(skipped), file=sys.stderr)
    sys.exit(0 if sys.argv[2] == "1" else 1)
PY
}

builddir=${BUILDDIR:-build-test}
setup "$builddir" -Db_sanitize=address,undefined -Db_lundef=false -De2e=true -Dfuzz=false
ninja -C "$builddir"
meson test -C "$builddir" --print-errorlogs "$@"
check_skips "$builddir"

if [ "${FUZZ:-1}" != 0 ]; then
    fuzzdir=${FUZZ_BUILDDIR:-build-fuzz}
    (
        CC=clang
        export CC
        setup "$fuzzdir" -Dfuzz=true -Dfuzz_seconds="${FUZZ_SECONDS:-20}" \
            -Db_sanitize=address,undefined -Db_lundef=false -De2e=false
    )
    ninja -C "$fuzzdir"
    meson test -C "$fuzzdir" --print-errorlogs --suite fuzz
    check_skips "$fuzzdir"
fi

# memcoordd under valgrind's memcheck on the simulator, in a build without sanitizers.
if [ "${VALGRIND:-1}" != 0 ]; then
    vgdir=${VALGRIND_BUILDDIR:-build-valgrind}
    setup "$vgdir" -Db_sanitize=none -De2e=false -Dfuzz=false
    ninja -C "$vgdir" daemon/memcoordd
    tests/valgrind/memcheck-sim.sh "$vgdir/daemon/memcoordd" "$top" "$vgdir/memcheck" 20
fi
